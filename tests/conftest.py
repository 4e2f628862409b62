"""Shared fixtures: storages on SQLite, PostgreSQL and Redis, and the CLI runner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# Two cores: torch's thread pool makes the many small tensors of these tests slower, not faster.
os.environ.setdefault("OMP_NUM_THREADS", "1")

POSTGRES_URL = os.environ.get("OPTNAS_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("OPTNAS_TEST_REDIS", "redis://127.0.0.1:6379/0")
# CI sets this so that a missing service fails the run instead of skipping its tests.
REQUIRE_SERVICES = os.environ.get("OPTNAS_REQUIRE_SERVICES") == "1"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _service_or_skip(name: str, port: int) -> None:
    if _port_open("127.0.0.1", port):
        return
    message = f"{name} is not listening on 127.0.0.1:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (OPTNAS_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> str:
    """The URL of the test PostgreSQL database (skipped, or failed in CI, when absent)."""
    _service_or_skip("PostgreSQL", 5432)
    return POSTGRES_URL


@pytest.fixture
def redis_url() -> str:
    """The URL of the test Redis server (skipped, or failed in CI, when absent)."""
    _service_or_skip("Redis", 6379)
    return REDIS_URL


@pytest.fixture
def unique_name() -> str:
    """A study name no other test uses, for shared servers."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite storage URL."""
    return f"sqlite:///{tmp_path / 'study.db'}"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``optnas`` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "optnas.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def supernet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supernet trained for one epoch on digits by `optnas supernet train`."""
    import json

    import torch

    path = tmp_path_factory.mktemp("supernet") / "supernet.pth"
    result = run_cli("supernet", "train", "--dataset", "digits", "--epochs", "1", "--out", str(path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1 and 0.0 <= summary["top1_largest"] <= 100.0
    assert "state_dict" in torch.load(path, map_location="cpu", weights_only=True)
    return path


def invoke_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``optnas`` in this process (fast, for error paths); same result shape as :func:`run_cli`."""
    from click.testing import CliRunner

    from optnas.cli import main

    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)
