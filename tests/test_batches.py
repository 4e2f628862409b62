"""Batch sizes of the surrogate sampler: fixed, or following how many trials ran at once."""

from __future__ import annotations

import datetime
import itertools
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

from optnas.samplers import SurrogateSampler, msunas
from optnas.samplers.batches import ConcurrentBatches, FixedBatches
from optnas.samplers.surrogate import BATCH_ATTR_PREFIX

T0 = datetime.datetime(2026, 1, 1)
SPACE = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(0, 7)}


def _ran(number: int, start: float | None, end: float | None) -> FrozenTrial:
    """A finished trial that ran from ``start`` to ``end`` seconds after T0 (None: no such time)."""
    trial = optuna.trial.create_trial(value=0.0)
    trial.number = number
    trial.datetime_start = None if start is None else T0 + datetime.timedelta(seconds=start)
    trial.datetime_complete = None if end is None else T0 + datetime.timedelta(seconds=end)
    return trial


def _peak_by_counting(trials: list[FrozenTrial]) -> int:
    """Independently: the most trials running at any moment, counted at every midpoint between event times."""
    times = sorted({t.datetime_start for t in trials} | {t.datetime_complete for t in trials})
    moments = [a + (b - a) / 2 for a, b in itertools.pairwise(times)]
    return max((sum(t.datetime_start < m < t.datetime_complete for t in trials) for m in moments), default=0)


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x, n = trial.suggest_float("x", 0.0, 1.0), trial.suggest_int("n", 0, 7)
    return x + 0.1 * n, (1 - x) ** 2 + 0.1 * (7 - n)


def _batches(study: optuna.Study) -> list[dict[str, Any]]:
    return [study.user_attrs[key] for key in sorted(study.user_attrs) if key.startswith(BATCH_ATTR_PREFIX)]


def test_fixed_batches_ignore_the_trials() -> None:
    assert FixedBatches(3).size([]) == 3
    assert FixedBatches(3).size([_ran(i, 0, 10) for i in range(6)]) == 3
    with pytest.raises(ValueError, match="at least one"):
        FixedBatches(0)


@pytest.mark.parametrize(("intervals", "expected"), [
    ([], 1),
    # One after another, each starting as the last ended: one at a time.
    ([(0, 1), (1, 2), (2, 3), (3, 4)], 1),
    ([(0, 2), (1, 3), (1.5, 4), (3.5, 5)], 3),
    # Six at once, capped at four.
    ([(0, 10)] * 6, 4),
    # Parallel long ago, sequential in the latest window of eight: one.
    ([(0, 10)] * 4 + [(10 + i, 11 + i) for i in range(8)], 1),
    # Times missing (enqueued, or added without times): not counted.
    ([(None, None), (0, 1), (None, 5)], 1),
])
def test_concurrent_batches_follow_the_most_trials_running_at_once(intervals: list[tuple[Any, Any]],
                                                                    expected: int) -> None:
    trials = [_ran(i, start, end) for i, (start, end) in enumerate(intervals)]
    assert ConcurrentBatches(4).size(trials) == expected


def test_concurrent_batches_against_counting_at_every_moment() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 15))
        starts = rng.uniform(0, 20, n).round(1)
        ends = starts + rng.uniform(0.1, 6, n).round(1)
        trials = [_ran(i, float(s), float(e)) for i, (s, e) in enumerate(zip(starts, ends))]
        # A window holding every trial: the peak over all of them.
        assert ConcurrentBatches(most=99, window=99).size(trials) == max(1, _peak_by_counting(trials))


def test_a_sequential_study_learns_from_every_trial() -> None:
    sampler = SurrogateSampler(SPACE, n_doe=6, seed=0, predictor="rbf", sec_predictor="rbf")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=12)
    batches = _batches(study)
    assert [(b["iteration"], b["first"], b["size"], b["n_train"]) for b in batches] == [
        (k, 5 + k, 1, 5 + k) for k in range(1, 7)]
    # Each trial past the design evaluates its batch's one candidate.
    assert [study.trials[b["first"]].params for b in batches] == [b["params"][0] for b in batches]


def test_a_sequential_study_picks_by_expected_gain_every_fifth_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    expected_picks: list[int] = []
    select_batch = msunas.select_batch

    def spy(*args: Any, **kwargs: Any) -> list[int]:
        outcomes = args[5] if len(args) > 5 else kwargs.get("outcomes")
        expected_picks.append(0 if outcomes is None else outcomes.picks)
        return select_batch(*args, **kwargs)

    monkeypatch.setattr(msunas, "select_batch", spy)
    sampler = SurrogateSampler(SPACE, n_doe=6, seed=0, predictor="rbf", sec_predictor="rbf")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=17)
    # Eleven steps of one trial: the first, sixth and eleventh by expected gain.
    assert expected_picks == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]


def test_parallel_workers_share_batches_as_large_as_their_number() -> None:
    sampler = SurrogateSampler(SPACE, n_doe=6, seed=0, predictor="rbf", sec_predictor="rbf", poll_seconds=0.01)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)

    def slow(trial: optuna.Trial) -> tuple[float, float]:
        time.sleep(0.1)
        return _objective(trial)

    study.optimize(slow, n_trials=21, n_jobs=3)
    batches = _batches(study)
    # Three workers hold three trials at a time (the last may be cut short by n_trials).
    assert all(b["size"] == 3 for b in batches)
    assert [b["first"] for b in batches] == list(range(6, 6 + 3 * len(batches), 3))
    for batch in batches:
        for i, params in enumerate(batch["params"]):
            if batch["first"] + i < len(study.trials):
                assert study.trials[batch["first"] + i].params == params
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials)


def test_a_trial_that_never_samples_keeps_the_numbering() -> None:
    sampler = SurrogateSampler(SPACE, n_doe=4, seed=0, predictor="rbf", sec_predictor="rbf")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=5)
    # Trial 5, batch 2's only trial, has every parameter fixed: it never asks the sampler.
    study.enqueue_trial({"x": 0.5, "n": 3})
    study.optimize(_objective, n_trials=2)
    batches = _batches(study)
    assert [(b["iteration"], b["first"]) for b in batches] == [(1, 4), (3, 6)]
    assert study.trials[6].params == batches[1]["params"][0]


def test_batches_stored_without_a_size_keep_the_fixed_numbering() -> None:
    sampler = SurrogateSampler(SPACE, n_doe=4, n_iter=2, seed=0, predictor="rbf", sec_predictor="rbf")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=6)
    # As an earlier version stored batch 1: no first trial, no size.
    old = {key: value for key, value in _batches(study)[0].items() if key not in ("first", "size")}
    study.set_user_attr(f"{BATCH_ATTR_PREFIX}0001", old)
    resumed = SurrogateSampler(SPACE, n_doe=4, n_iter=2, seed=0, predictor="rbf", sec_predictor="rbf")
    assert resumed.first_number(study, 2) == 6
    assert resumed.first_number(study, 3) == 8


def test_a_batch_waits_for_other_threads_trials_not_for_the_askers_own() -> None:
    sampler = SurrogateSampler(SPACE, n_doe=2, seed=0, predictor="rbf", sec_predictor="rbf", poll_seconds=0.01)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=2)
    held = study.ask()
    held.suggest_float("x", 0.0, 1.0)
    # Trial 3 is past batch 1 (trial 2, untold): the thread that holds trial 2 gets a random draw at once.
    own = study.ask()
    own.suggest_float("x", 0.0, 1.0)
    assert not any(key.endswith("0002") for key in study.user_attrs)
    done = threading.Event()

    def ask_next() -> None:
        study.ask().suggest_float("x", 0.0, 1.0)
        done.set()

    # Another thread's trial 4 waits until trials 2 and 3 are told.
    worker = threading.Thread(target=ask_next)
    worker.start()
    worker.join(timeout=0.5)
    assert not done.is_set()
    study.tell(held, _objective(held))
    study.tell(own, _objective(own))
    worker.join(timeout=30)
    assert done.is_set()


def test_waiting_workers_do_not_fill_the_log_with_optunas_experimental_warning() -> None:
    # pytest.ini ignores the warning: a fresh interpreter that shows every warning once per place.
    script = """
import time, optuna
from optuna.distributions import FloatDistribution
from optnas.samplers import SurrogateSampler
optuna.logging.set_verbosity(optuna.logging.ERROR)
sampler = SurrogateSampler({"x": FloatDistribution(0, 1)}, n_doe=2, n_iter=2, seed=0, predictor="rbf",
                           sec_predictor="rbf", poll_seconds=0.01)
study = optuna.create_study(sampler=sampler)
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.05 * (trial.number % 3))
    return x
study.optimize(objective, n_trials=8, n_jobs=2)
"""
    result = subprocess.run([sys.executable, "-W", "default", "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert "fail_stale_trials" not in result.stderr
