"""Opening Optuna storages from a URL, with heartbeats and passwords kept out of messages."""

from __future__ import annotations

import os

import optuna
from optuna.storages import BaseStorage, RDBStorage

from optnas.studies.errors import StorageError

# A worker that stops beating for GRACE_PERIOD seconds is presumed dead and its trial failed;
# both can be tuned per cluster through the environment.
HEARTBEAT_INTERVAL = int(os.environ.get("OPTNAS_HEARTBEAT_INTERVAL", "30"))
GRACE_PERIOD = int(os.environ.get("OPTNAS_GRACE_PERIOD", str(4 * HEARTBEAT_INTERVAL)))
MAX_RETRY = 3


def mask_password(url: str) -> str:
    """Return the URL with its password replaced by ``***``.

    Args:
        url: a storage URL.
    """
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL: mask what looks like user:pass@
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            credentials, host = rest.rsplit("@", 1)
            user = credentials.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return url


def open_storage(url: str) -> BaseStorage:
    """Open the storage behind a URL.

    ``redis://`` URLs open a journal on Redis; ``grpc://host:port`` connects to an Optuna
    storage proxy (``optnas storage-proxy``), which spares the database one connection per
    worker; anything else is an SQLAlchemy URL opened as an RDB storage with heartbeats, so
    that trials of dead workers are failed and retried.

    Args:
        url: e.g. ``sqlite:///optnas.db``, ``postgresql://user@host/db``, ``grpc://host:13000``.
    """
    try:
        if url.startswith("grpc://"):
            return _grpc_proxy(url)
        if url.startswith(("redis://", "rediss://")):
            from optuna.storages.journal import JournalRedisBackend

            return optuna.storages.JournalStorage(JournalRedisBackend(url))
        engine_kwargs = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            # Several processes share one SQLite file: wait for the lock instead of failing.
            engine_kwargs["connect_args"] = {"timeout": 60}
        storage = RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            grace_period=GRACE_PERIOD,
            # A dead worker's architecture goes back to the queue and a live worker evaluates it.
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )
        if url.startswith("sqlite"):
            _tune_sqlite(storage)
        return storage
    except ImportError as error:
        missing = getattr(error.__cause__, "name", None) or error.name
        raise StorageError(
            f"cannot open storage {mask_password(url)}: missing database driver ({missing}); "
            "install it, e.g. pip install 'optnas[postgres]'"
        ) from None
    except Exception as error:  # noqa: BLE001 - any driver error becomes one masked line
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StorageError(
            f"cannot open storage {mask_password(url)}: {_mask_in(reason, url)}"
        ) from None


def _grpc_proxy(url: str) -> BaseStorage:
    from optuna.storages import GrpcStorageProxy

    host, _, port = url[len("grpc://"):].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a gRPC storage URL is grpc://HOST:PORT, got {url}")
    proxy = GrpcStorageProxy(host=host, port=int(port))
    try:
        proxy.wait_server_ready(timeout=10)
    except Exception:  # noqa: BLE001 - the proxy raises its own timeout type
        proxy.close()
        raise ConnectionError(f"no Optuna storage proxy answers at {host}:{port}") from None
    return proxy


def serve_proxy(storage_url: str, host: str, port: int) -> None:
    """Serve a storage to many workers through Optuna's gRPC proxy, until interrupted.

    Args:
        storage_url: the storage behind the proxy (an RDB URL).
        host: address to bind.
        port: port to bind.
    """
    from optuna.storages import run_grpc_proxy_server

    run_grpc_proxy_server(open_storage(storage_url), host=host, port=port)


def _tune_sqlite(storage: RDBStorage) -> None:
    """Write-ahead logging: readers no longer block the writer, and a commit needs no fsync of
    the main file (every trial parameter is one commit). Durable against process crashes."""
    from sqlalchemy import event

    def on_connect(connection, _record) -> None:  # noqa: ANN001 - DB-API objects
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()


def _mask_in(text: str, url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # noqa: BLE001
        password = None
    return text.replace(password, "***") if password else text
