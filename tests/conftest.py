"""Shared fixtures: storages on SQLite, PostgreSQL and Redis, the CLI runner, the digits data
and supernets.

Data and supernets are session-scoped: building them once serves every test file. Tests that
receive them must not change them (train a copy: ``extract_subnet`` returns one). Tests of
separate processes can start with the session and run beside the others (start_with_session).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from torch import nn

    from optnas.data.datasets import DataSplits

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


def postgres_listening() -> bool:
    """Whether the test PostgreSQL server accepts connections (for work started ahead of its tests)."""
    return _port_open("127.0.0.1", 5432)


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


def selected(request: pytest.FixtureRequest, *tests: Callable[..., None]) -> bool:
    """Whether any of these test functions runs in this session (for work started ahead of them).

    Args:
        request: the asking fixture's request.
        tests: test functions.
    """
    return any(getattr(item, "function", None) in tests for item in request.session.items)


def selected_values(request: pytest.FixtureRequest, test: Callable[..., None], argname: str) -> set:
    """The values of the parameter ``argname`` with which a parametrized test runs in this session.

    Args:
        request: the asking fixture's request.
        test: a test function parametrized on ``argname``.
        argname: the parameter's name.
    """
    return {item.callspec.params[argname] for item in request.session.items
            if getattr(item, "function", None) is test}


Scenarios = dict[Hashable, Callable[[], None]]
Starter = Callable[[pytest.FixtureRequest, pytest.TempPathFactory], Scenarios]
_STARTERS: dict[str, Starter] = {}


def start_with_session(starter: Starter) -> Starter:
    """Register a test module's scenarios, to run in threads from the start of the session.

    A scenario holds a test's code and assertions; its test waits for it with
    :meth:`SessionScenarios.result`, which re-raises what failed in the thread. Scenarios of
    several processes (workers, their storage) leave a core idle much of their time, and the
    in-process tests use one core: started with the session, they run beside the other tests
    instead of after them. So a scenario must leave alone what those tests use: no
    ``invoke_cli`` (it swaps ``sys.stdout``), no monkeypatching, working folder or environment.

    Args:
        starter: ``starter(request, tmp_path_factory)`` returns the scenarios of its module's
            selected tests (see :func:`selected`), by key; it runs before the first test.
    """
    _STARTERS[starter.__module__] = starter
    return starter


class SessionScenarios:
    """The scenarios started with the session (:func:`start_with_session`), by module and key."""

    def __init__(self) -> None:
        self.futures: dict[str, dict[Hashable, Future]] = {}
        self.errors: dict[str, Exception] = {}

    def result(self, module: str, key: Hashable, timeout: float) -> None:
        """Wait for a scenario; re-raise what failed in it, or in starting its module's scenarios.

        Args:
            module: the module that registered it (``__name__``).
            key: its key.
            timeout: seconds to wait.
        """
        if module in self.errors:
            raise self.errors[module]
        self.futures[module][key].result(timeout=timeout)


@pytest.fixture(scope="session", autouse=True)
def session_scenarios(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionScenarios]:
    """Every registered module's scenarios, started in threads before the first test; the
    session's teardown waits for them."""
    started = SessionScenarios()
    scenarios: dict[str, Scenarios] = {}
    for module, starter in _STARTERS.items():
        try:
            scenarios[module] = starter(request, tmp_path_factory)
        except Exception as error:  # noqa: BLE001 - it fails that module's tests, not the whole session
            started.errors[module] = error
    with ThreadPoolExecutor(max_workers=max(1, sum(map(len, scenarios.values())))) as pool:
        for module, by_key in scenarios.items():
            started.futures[module] = {key: pool.submit(scenario) for key, scenario in by_key.items()}
        yield started


def start_cli(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``optnas`` in a subprocess, as a user would, without waiting for it (see :func:`finish`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "optnas.cli", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    """Wait for a process from :func:`start_cli`; the same result as :func:`run_cli`."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``optnas`` in a subprocess, as a user would."""
    return finish(start_cli(*args, cwd=cwd), timeout)


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 tree in the real file format with 84 training and 20 test images (``--data``)."""
    from tests.datasets_fixtures import make_cifar10

    folder = tmp_path_factory.mktemp("tiny-cifar10")
    make_cifar10(folder, n_train=84, n_test=20)
    return folder


def tiny_cifar10_options(tiny_cifar10: Path) -> tuple[str, ...]:
    """Search options that score candidates on the ``tiny_cifar10`` tree: BN statistics (and any
    fine-tuning) on its 64 training images, accuracy on the 20 held out.

    For searches whose checks do not depend on the data: a candidate on digits recalibrates
    BN on 1318 training images and is scored on 120, about a second each.

    Args:
        tiny_cifar10: the ``tiny_cifar10`` fixture.
    """
    return ("--dataset", "cifar10", "--data", str(tiny_cifar10), "--vld-size", "20")


@pytest.fixture(scope="session")
def supernet_file(tmp_path_factory: pytest.TempPathFactory, tiny_cifar10: Path) -> Path:
    """A supernet checkpoint written by `optnas supernet train`: one epoch, one step.

    The tests that take it need *some* trained-format supernet for 10 classes, not a good one:
    none of them asserts an accuracy it would reach. So it trains on a tiny CIFAR-10 tree in
    the real file format (64 training images: one step of 64, 20 validation images), which
    also runs the command end to end with ``--data`` in about 2 s instead of a minute for an
    epoch of digits. In this process: a subprocess would spend 5 s importing torch, and the
    weights are the same (seeded initialisation and epochs, one thread either way).
    """
    import json

    import torch

    path = tmp_path_factory.mktemp("supernet") / "supernet.pth"
    result = invoke_cli("supernet", "train", "--dataset", "cifar10", "--data", str(tiny_cifar10),
                        "--vld-size", "20", "--epochs", "1", "--out", str(path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1 and 0.0 <= summary["top1_largest"] <= 100.0
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["n_classes"] == 10 and "state_dict" in checkpoint
    return path


@pytest.fixture(scope="session")
def supernet() -> nn.Module:
    """An untrained OFA MobileNetV3 supernet for 10 classes (``build_supernet(10)``, seed 0).

    Shared by every test file: take subnets from it with ``extract_subnet`` (a copy) and leave
    its weights alone; a test that activates a subnet on it restores ``set_max_net()``.
    """
    from optnas.networks.supernet import build_supernet

    return build_supernet(10)


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    """The embedded digits dataset with its default splits (1078 train, 360 valid, 359 test)."""
    from optnas.data.datasets import load_dataset

    return load_dataset("digits")


def digits_subsets(digits: DataSplits, n_train: int, n_valid: int | None = None, n_test: int = 10) -> DataSplits:
    """The first images of each digits split (``n_valid=None``: the whole validation split).

    Args:
        digits: the ``digits`` fixture.
        n_train: training images kept.
        n_valid: validation images kept, or None for all.
        n_test: test images kept.
    """
    from optnas.data.datasets import DataSplits

    valid = digits.valid if n_valid is None else digits.valid.subset(range(n_valid))
    return DataSplits("digits", digits.train.subset(range(n_train)), valid,
                      digits.test.subset(range(n_test)), digits.n_classes)


@pytest.fixture(scope="session")
def tiny_digits(digits: DataSplits) -> DataSplits:
    """40 training, 30 validation and 10 test images of digits: enough for a step or two."""
    return digits_subsets(digits, 40, 30)


def invoke_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``optnas`` in this process (fast, for error paths); same result shape as :func:`run_cli`."""
    from click.testing import CliRunner

    from optnas.cli import main

    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)
