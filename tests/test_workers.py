"""Many workers on one study: exact budgets, no duplicates, recovery from a killed worker."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from functools import partial
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.studies.study import create_search_study
from tests.conftest import (
    POSTGRES_URL,
    Scenarios,
    SessionScenarios,
    postgres_listening,
    selected,
    selected_values,
    start_with_session,
)
from tests.forked import Forked


def _worker(url: str, name: str, cwd: Path, env: dict | None = None) -> Forked:
    return Forked(["-m", "optnas.cli", "worker", "--study-name", name, "--storage", url, "--quiet"], cwd, env)


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler())


def _evaluated(study: optuna.Study) -> list[str]:
    return [json.dumps(t.user_attrs["subnet"], sort_keys=True) for t in study.get_trials(states=(TrialState.COMPLETE,))
            if "duplicate_of" not in t.user_attrs]


def _three_workers_spend_exactly_the_budget(url: str, backend: str, tmp_path: Path, unique_name: str) -> None:
    """Three workers on one study complete exactly its budget and never evaluate an architecture twice."""
    # 6 design trials (two each) and two batches of 4, which three workers cannot split evenly:
    # a worker waits for the first batch's results from the others before the second.
    config = SearchConfig(search_space="nasbench201", dataset="cifar10", sec_obj="params", n_doe=6,
                          iterations=2, n_iter=4, predictor="rbf", save=str(tmp_path / "run")).validate()
    create_search_study(config, url, unique_name)
    try:
        workers = [_worker(url, unique_name, tmp_path) for _ in range(3)]
        for worker in workers:
            _, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
        study = _load(url, unique_name)
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == config.budget
        evaluated = _evaluated(study)
        assert len(evaluated) == len(set(evaluated)), "an architecture was evaluated twice"
    finally:
        if backend == "postgresql":
            optuna.delete_study(study_name=unique_name, storage=url)


def _workers_through_the_grpc_storage_proxy(tmp_path: Path) -> None:
    """Two workers reach a SQLite study through `optnas storage-proxy` (gRPC)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    database = f"sqlite:///{tmp_path / 's.db'}"
    proxy = Forked(["-m", "optnas.cli", "storage-proxy", "--storage", database, "--port", str(port)], tmp_path)
    try:
        url = f"grpc://127.0.0.1:{port}"
        config = SearchConfig(search_space="nasbench201", dataset="cifar10", sec_obj="params", n_doe=6,
                              iterations=2, n_iter=3, predictor="rbf", save=str(tmp_path / "run")).validate()
        deadline = time.monotonic() + 60
        while True:
            try:
                create_search_study(config, url, "proxied")
                break
            except Exception:  # the proxy may still be starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        workers = [_worker(url, "proxied", tmp_path) for _ in range(2)]
        for worker in workers:
            _, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
        study = _load(database, "proxied")
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == config.budget
        evaluated = _evaluated(study)
        assert len(evaluated) == len(set(evaluated))
    finally:
        proxy.kill()
        proxy.communicate(timeout=30)


def _recover_a_killed_worker(supernet_file: Path, tmp_path: Path) -> None:
    """A worker killed inside a trial: another worker fails that trial and evaluates its architecture again."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    # Real MobileNetV3 trials, so that the victim dies inside one, but cheap ones: 1338 of the
    # 1438 training images held out leave 100 to fine-tune on (a trial takes seconds, not 15).
    config = SearchConfig(supernet_path=str(supernet_file), n_doe=3, iterations=1, n_iter=1, n_epochs=1,
                          vld_size=1338, sec_obj="params", predictor="rbf", save=str(tmp_path / "run")).validate()
    create_search_study(config, url, "killed")
    # A dead worker's trial is failed once its heartbeat is 4 s old instead of the default 120 s.
    fast_heartbeat = {"OPTNAS_HEARTBEAT_INTERVAL": "1", "OPTNAS_GRACE_PERIOD": "4"}
    victim = _worker(url, "killed", tmp_path, fast_heartbeat)
    deadline = time.monotonic() + 240
    running = []
    while time.monotonic() < deadline and not running:
        time.sleep(0.5)
        running = [t for t in _load(url, "killed").get_trials(states=(TrialState.RUNNING,))
                   if "subnet" in t.user_attrs]
    assert running, "the worker never started a trial"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    killed = running[0]
    survivor = _worker(url, "killed", tmp_path, fast_heartbeat)
    _, err = survivor.communicate(timeout=400)
    assert survivor.returncode == 0, err
    study = _load(url, "killed")
    assert study.trials[killed.number].state == TrialState.FAIL
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == config.budget
    assert killed.user_attrs["subnet"] in [t.user_attrs["subnet"] for t in complete]
    evaluated = _evaluated(study)
    assert len(evaluated) == len(set(evaluated))


@start_with_session
def _scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    """This module's scenarios, started in threads with the session; its tests wait for them.

    Their worker processes spend much of their time waiting (on the storage, on each other's
    batches, for a heartbeat to go stale) and the in-process tests use one core: the scenarios
    run beside those tests instead of after them. The storage proxy and the workers are forked
    from the tests' forkserver (tests/forked.py). Only the scenarios of the selected tests
    start; PostgreSQL's only when it listens (else its test skips, or fails in CI, through the
    ``postgres_url`` fixture).
    """
    started: Scenarios = {}
    for backend in sorted(selected_values(request, test_three_workers_spend_exactly_the_budget, "backend")):
        if backend == "postgresql" and not postgres_listening():
            continue
        folder = tmp_path_factory.mktemp(f"three-{backend}")
        url = f"sqlite:///{folder / 's.db'}" if backend == "sqlite" else POSTGRES_URL
        started[backend] = partial(_three_workers_spend_exactly_the_budget, url, backend, folder,
                                   f"test-{uuid.uuid4().hex[:12]}")
    if selected(request, test_workers_through_the_grpc_storage_proxy):
        started["grpc"] = partial(_workers_through_the_grpc_storage_proxy, tmp_path_factory.mktemp("grpc"))
    if selected(request, test_killed_worker_is_recovered):
        started["killed"] = partial(_recover_a_killed_worker, request.getfixturevalue("supernet_file"),
                                    tmp_path_factory.mktemp("killed"))
    return started


# The scenarios run in the session's threads; each test re-raises what failed in its scenario.
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_three_workers_spend_exactly_the_budget(backend: str, request: pytest.FixtureRequest,
                                                session_scenarios: SessionScenarios) -> None:
    if backend == "postgresql":
        request.getfixturevalue("postgres_url")  # skipped, or failed in CI, when PostgreSQL is absent
    session_scenarios.result(__name__, backend, timeout=700)


def test_workers_through_the_grpc_storage_proxy(session_scenarios: SessionScenarios) -> None:
    session_scenarios.result(__name__, "grpc", timeout=700)


def test_killed_worker_is_recovered(session_scenarios: SessionScenarios) -> None:
    session_scenarios.result(__name__, "killed", timeout=700)
