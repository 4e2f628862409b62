"""Every iteration gets its record (``iteration:NNNN``), however the completed count moves."""

from __future__ import annotations

import datetime
from functools import partial
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.spaces.nasbench201 import lookup
from optnas.studies.runner import ITERATION_ATTR_PREFIX, IterationRecorder
from optnas.studies.search import start_search
from optnas.studies.study import create_search_study
from tests.conftest import Scenarios, SessionScenarios, selected, start_with_session
from tests.forked import Forked


def _config(tmp_path: Path, **overrides: object) -> SearchConfig:
    values = dict(search_space="nasbench201", dataset="cifar10", sec_obj="params", n_doe=6, iterations=6,
                  n_iter=2, predictor="rbf", save=str(tmp_path / "run"))
    values.update(overrides)
    return SearchConfig(**values).validate()


def _racing_config(tmp_path: Path, iterations: int) -> SearchConfig:
    """One trial per iteration, proposed without waiting for the others: trials finish close
    together, so the completed count often moves past an iteration's end before a callback reads it."""
    return _config(tmp_path, sampler="random", n_doe=4, n_iter=1, iterations=iterations)


def _records(study: optuna.Study) -> dict[int, dict]:
    return {value["iteration"]: value for key, value in study.user_attrs.items()
            if key.startswith(ITERATION_ATTR_PREFIX)}


def _assert_every_record(study: optuna.Study, config: SearchConfig) -> None:
    records = _records(study)
    assert sorted(records) == list(range(config.iterations + 1))
    for iteration, record in records.items():
        assert record["n_complete"] == config.n_doe + iteration * config.n_iter
    hvs = [records[k]["hv"] for k in sorted(records)]
    assert hvs == sorted(hvs)


def _trials(config: SearchConfig) -> list[optuna.trial.FrozenTrial]:
    """Completed NAS-Bench-201 trials whose completion order is not their number order."""
    space = config.make_space()
    start = datetime.datetime(2026, 1, 1)
    trials = []
    for index, subnet in enumerate(space.sample(np.random.default_rng(0), config.budget)):
        figures = lookup(subnet, "cifar10", 0)
        trial = optuna.trial.create_trial(values=[figures["top1"], figures["params"]],
                                          user_attrs={"subnet": subnet, **figures})
        # Each run of three trials finishes in reverse order: the first 8 to finish are 0-5, 7 and 8.
        trial.datetime_start = start + datetime.timedelta(seconds=index)
        trial.datetime_complete = start + datetime.timedelta(seconds=12 + index - 2 * (index % 3))
        trials.append(trial)
    return trials


def test_one_call_writes_every_iteration_the_count_jumped_past(tmp_path: Path) -> None:
    config = _config(tmp_path)
    recorder = IterationRecorder(config, CandidateEvaluator(config, tmp_path))
    trials = _trials(config)
    jumped = optuna.create_study(directions=["maximize", "minimize"])
    jumped.add_trials(trials)
    recorder.record(jumped)
    _assert_every_record(jumped, config)
    # The same trials told one at a time, in completion order: the same records, to the second.
    stepwise = optuna.create_study(directions=["maximize", "minimize"])
    for trial in sorted(trials, key=lambda t: t.datetime_complete):
        stepwise.add_trial(trial)
        recorder.record(stepwise)
    assert _records(stepwise) == _records(jumped)
    assert _records(jumped)[1]["seconds"] == 2.0


def test_threads_write_every_iteration_record(tmp_path: Path) -> None:
    config = _racing_config(tmp_path, iterations=24)
    study = start_search(config, f"sqlite:///{tmp_path / 's.db'}", progress=False, n_jobs=3)
    _assert_every_record(study, config)


def _two_workers_write_every_iteration_record(tmp_path: Path) -> None:
    config = _racing_config(tmp_path, iterations=40)
    url = f"sqlite:///{tmp_path / 's.db'}"
    create_search_study(config, url, "records")
    workers = [Forked(["-m", "optnas.cli", "worker", "--study-name", "records", "--storage", url, "--quiet"], tmp_path)
               for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    study = optuna.load_study(study_name="records", storage=url, sampler=optuna.samplers.RandomSampler())
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) >= config.budget
    _assert_every_record(study, config)


@start_with_session
def _scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    """The two workers' study: its processes run beside the other tests (conftest.start_with_session)."""
    if not selected(request, test_two_workers_write_every_iteration_record):
        return {}
    return {"workers": partial(_two_workers_write_every_iteration_record, tmp_path_factory.mktemp("records"))}


def test_two_workers_write_every_iteration_record(session_scenarios: SessionScenarios) -> None:
    session_scenarios.result(__name__, "workers", timeout=700)
