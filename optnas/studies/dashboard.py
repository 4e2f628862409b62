"""Serving optuna-dashboard on a study storage."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import optuna

from optnas.studies.storage import mask_password, open_storage
from optnas.studies.study import ARTIFACT_DIR_ATTR

logger = logging.getLogger(__name__)


def stored_artifact_dir(storage: optuna.storages.BaseStorage) -> str | None:
    """Return the artifact folder recorded by the first optnas study that has one.

    Args:
        storage: an opened storage.
    """
    for summary in optuna.get_all_study_summaries(storage):
        folder = summary.user_attrs.get(ARTIFACT_DIR_ATTR)
        if folder:
            return folder
    return None


def make_app(storage_url: str, artifact_dir: str | None = None):  # noqa: ANN201 - a WSGI callable
    """Return optuna-dashboard's WSGI application on a storage, with its artifact store.

    Args:
        storage_url: the storage URL.
        artifact_dir: the artifact folder (default: the one stored with the studies).
    """
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    storage = open_storage(storage_url)
    folder = artifact_dir or stored_artifact_dir(storage)
    store = FileSystemArtifactStore(folder) if folder and Path(folder).is_dir() else None
    return wsgi(storage, artifact_store=store)


def serve(
    storage_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifact_dir: str | None = None,
    echo: Callable[[str], None] = logger.info,
) -> None:
    """Serve the dashboard until interrupted.

    Args:
        storage_url: the storage URL.
        host: address to bind.
        port: port.
        artifact_dir: the artifact folder (default: the one stored with the studies).
        echo: where messages go.
    """
    from wsgiref.simple_server import make_server

    app = make_app(storage_url, artifact_dir)
    try:
        server = make_server(host, port, app)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    echo(f"optuna-dashboard on {mask_password(storage_url)}: http://{host}:{port}/ (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
