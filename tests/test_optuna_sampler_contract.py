"""Optuna's own sampler test cases against SurrogateSampler, and the wrappers users put it in.

Optuna ships its sampler contract as pytest classes (``optuna.testing.pytest_samplers``); a
third-party sampler subclasses them and overrides the ``sampler`` fixture. Every case of a
class listed here runs; none is skipped:

* the plain form with its defaults, ``SurrogateSampler(seed=0)``: every case of
  ``BasicSamplerTestCase``, ``RelativeSamplerTestCase`` and ``MultiObjectiveSamplerTestCase``.
  No case runs 20 trials, so with ``n_doe=20`` they meet only the initial design;
* the plain form with batches from the third trial on (``n_doe=2, n_iter=2``, RBF predictors,
  a small NSGA-II on the surrogate): every case of ``BasicSamplerTestCase``, and
  ``test_trial_relative_params`` (1 and 2 threads), whose studies of up to 20 trials are then
  mostly answered by the surrogate's batches. The other relative cases call
  ``sample_relative`` directly on trials they leave RUNNING, and a trial past the design waits
  for every trial below it to finish (the batch's inputs), so they run with the design only;
  the multi-objective case calls only ``sample_independent``, which ``n_doe`` does not change;
* the NAS form optnas's search builds (``make_sampler`` of a NAS-Bench-201 configuration):
  every case of the three classes, the basic ones with batches from the third trial. Optuna's
  objectives record no subnet, so there its batches have nothing to learn from and stay
  empty: these cases show that the NAS form answers any study's parameters, not its quality.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, PartialFixedSampler
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.samplers import SurrogateSampler
from optnas.studies.sampling import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Options a user could choose for a cheap surrogate: a batch every two trials from the third on.
BATCHES: dict[str, Any] = {"n_doe": 2, "n_iter": 2, "predictor": "rbf", "sec_predictor": "rbf",
                           "population_size": 20, "generations": 5, "poll_seconds": 0.01}
SPACE = {"x": IntDistribution(0, 10), "y": FloatDistribution(0.0, 1.0),
         "c": CategoricalDistribution(["a", "b", "c"])}


def _nas_sampler(tmp_path: Path, n_doe: int) -> SurrogateSampler:
    config = SearchConfig(search_space="nasbench201", dataset="cifar10", sec_obj="params", n_doe=n_doe,
                          n_iter=2, predictor="rbf", sec_predictor="rbf", seed=0,
                          save=str(tmp_path / "run")).validate()
    sampler = make_sampler(config)
    assert isinstance(sampler, SurrogateSampler)
    return sampler


class _Plain:
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: SurrogateSampler(seed=0)


class _PlainBatches:
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: SurrogateSampler(seed=0, **BATCHES)


class _NAS:
    @pytest.fixture
    def sampler(self, tmp_path: Path) -> Callable[[], BaseSampler]:
        return lambda: _nas_sampler(tmp_path, n_doe=20)


class _NASBatches:
    @pytest.fixture
    def sampler(self, tmp_path: Path) -> Callable[[], BaseSampler]:
        return lambda: _nas_sampler(tmp_path, n_doe=2)


class TestPlainBasic(_Plain, BasicSamplerTestCase):
    pass


class TestPlainRelative(_Plain, RelativeSamplerTestCase):
    pass


class TestPlainMultiObjective(_Plain, MultiObjectiveSamplerTestCase):
    pass


class TestPlainBatchesBasic(_PlainBatches, BasicSamplerTestCase):
    pass


class TestPlainBatchesRelative(_PlainBatches):
    test_trial_relative_params = RelativeSamplerTestCase.test_trial_relative_params


class TestNASBatchesBasic(_NASBatches, BasicSamplerTestCase):
    pass


class TestNASRelative(_NAS, RelativeSamplerTestCase):
    pass


class TestNASMultiObjective(_NAS, MultiObjectiveSamplerTestCase):
    pass


# ---- what users wrap it in ------------------------------------------------------------------


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_int("x", 0, 10)
    y = trial.suggest_float("y", 0.0, 1.0)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    return (x - 7) ** 2 + y + (c != "b")


def _sampler(**options: Any) -> SurrogateSampler:
    return SurrogateSampler(**{"search_space": SPACE, "seed": 0, **BATCHES, "n_doe": 4, **options})


def _batch_params(study: optuna.Study, number: int, n_doe: int = 4, n_iter: int = 2) -> dict[str, Any]:
    """The stored candidate trial ``number`` (past the design) was given."""
    k, i = divmod(number - n_doe, n_iter)
    return study.user_attrs[f"surrogate:batch:{k + 1:04d}"]["params"][i]


def test_partial_fixed_sampler_fixes_its_parameter_and_the_surrogate_proposes_the_others() -> None:
    sampler = _sampler()
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective, n_trials=6)
    study.sampler = PartialFixedSampler({"c": "c"}, sampler)
    study.optimize(_objective, n_trials=4)
    trials = study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials[6:]:
        assert trial.params["c"] == "c"
        candidate = _batch_params(study, trial.number)
        assert {k: trial.params[k] for k in ("x", "y")} == {k: candidate[k] for k in ("x", "y")}


def test_enqueued_trials_take_their_values_and_count_in_the_next_batch() -> None:
    study = optuna.create_study(sampler=_sampler())
    study.enqueue_trial({"x": 7, "y": 0.0, "c": "b"})
    study.enqueue_trial({"c": "a"})
    study.optimize(_objective, n_trials=8)
    trials = study.trials
    assert trials[0].params == {"x": 7, "y": 0.0, "c": "b"}
    # The partial one: its fixed value, the design's point for the rest.
    space = study.sampler.strategy.space_of(study)
    point = space.from_vector(study.sampler.candidate(study, 1, space))
    assert trials[1].params == {"x": point["x"], "y": point["y"], "c": "a"}
    assert study.user_attrs["surrogate:batch:0001"]["n_train"] == 4
    for trial in trials[4:]:
        assert trial.params == _batch_params(study, trial.number)


def test_ask_and_tell_with_fixed_distributions_one_batch_at_a_time() -> None:
    # No search_space given: inferred from the told trials, as Optuna's samplers do.
    study = optuna.create_study(sampler=SurrogateSampler(seed=0, **{**BATCHES, "n_doe": 4}))
    told = 0
    for size in (1, 3, 2, 2):
        # A whole batch asked before any is told: batch k waits only for the trials below it.
        trials = [study.ask(fixed_distributions=SPACE) for _ in range(size)]
        for trial in trials:
            study.tell(trial, (trial.params["x"] - 7) ** 2 + trial.params["y"])
        told += size
    assert told == 8 and all(t.state == TrialState.COMPLETE for t in study.trials)
    for trial in study.trials[4:]:
        assert trial.params == _batch_params(study, trial.number)


def _conditional(trial: optuna.Trial) -> float:
    value = _objective(trial)
    # Conditional: outside the inferred space (the intersection), always sampled at random.
    if trial.params["c"] == "a":
        value += trial.suggest_float("extra", 0.0, 1.0)
    return value


def test_threads_with_an_inferred_space_and_conditional_parameters() -> None:
    study = optuna.create_study(sampler=SurrogateSampler(seed=0, **{**BATCHES, "n_doe": 4}))
    study.optimize(_conditional, n_trials=12, n_jobs=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for trial in study.trials[4:]:
        candidate = _batch_params(study, trial.number)
        # A batch's space is the intersection of the trials completed when it was computed: with
        # two threads it holds "extra" when all of those had c == "a", and a trial given another
        # c then does not suggest it.
        shared = [k for k in candidate if k in trial.params]
        assert set(SPACE) <= set(shared)
        assert {k: trial.params[k] for k in shared} == {k: candidate[k] for k in shared}
        assert ("extra" in trial.params) == (trial.params["c"] == "a")
        if "extra" in trial.params:
            assert 0.0 <= trial.params["extra"] <= 1.0


def test_conditional_parameters_in_a_given_space_are_proposed_when_suggested() -> None:
    space = {**SPACE, "extra": FloatDistribution(0.0, 1.0)}

    def objective(trial: optuna.Trial) -> float:
        value = _objective(trial)
        return value + (trial.suggest_float("extra", 0.0, 1.0) if trial.params["c"] == "a" else 0.0)

    study = optuna.create_study(sampler=_sampler(search_space=space))
    study.optimize(objective, n_trials=10)
    for trial in study.trials[4:]:
        candidate = _batch_params(study, trial.number)
        assert trial.params == {k: v for k, v in candidate.items() if k != "extra" or candidate["c"] == "a"}


def test_reseed_rng_changes_the_random_draws_not_the_seeded_candidates() -> None:
    runs = []
    for reseed in (False, True):
        sampler = _sampler()
        if reseed:
            sampler.reseed_rng()
        study = optuna.create_study(sampler=sampler)
        study.optimize(_objective, n_trials=8)
        frozen = study.trials[0]
        # A parameter outside the space: the random fallback, which reseed_rng reseeds.
        draw = sampler.sample_independent(study, frozen, "z", FloatDistribution(0.0, 1.0))
        runs.append(([t.params for t in study.trials], draw))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] != runs[1][1]


def test_a_sampler_pickled_mid_study_resumes_as_if_never_stopped() -> None:
    alone = optuna.create_study(sampler=SurrogateSampler(seed=0, **{**BATCHES, "n_doe": 4}))
    alone.optimize(_conditional, n_trials=14)
    sampler = SurrogateSampler(seed=0, **{**BATCHES, "n_doe": 4})
    study = optuna.create_study(sampler=sampler)
    study.optimize(_conditional, n_trials=7)
    # Optuna's recipe for resuming: the pickled sampler, with its cached batches and random state
    # (which draws the conditional parameter).
    study.sampler = pickle.loads(pickle.dumps(sampler))
    study.optimize(_conditional, n_trials=7)
    assert [t.params for t in study.trials] == [t.params for t in alone.trials]
    assert any("extra" in t.params for t in study.trials[7:])


def test_pruned_and_failed_trials_are_not_learnt_from_nor_proposed_again() -> None:
    def objective(trial: optuna.Trial) -> float:
        value = _objective(trial)
        if trial.params["c"] == "a":
            raise optuna.TrialPruned()
        if trial.params["x"] >= 9:
            raise RuntimeError("a failed evaluation")
        return value

    study = optuna.create_study(sampler=_sampler(n_doe=6))
    study.optimize(objective, n_trials=14, catch=(RuntimeError,))
    states = {t.state for t in study.trials}
    assert {TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE} <= states
    for k in range(1, 5):
        batch = study.user_attrs[f"surrogate:batch:{k:04d}"]
        earlier = [t for t in study.trials if t.number < 6 + (k - 1) * 2]
        assert batch["n_train"] == sum(t.state == TrialState.COMPLETE for t in earlier)
        assert not [p for p in batch["params"] if p in [t.params for t in earlier]]


def test_a_batch_with_fewer_than_two_completed_trials_is_empty_not_an_error() -> None:
    def objective(trial: optuna.Trial) -> float:
        value = _objective(trial)
        if trial.number < 3:
            raise RuntimeError("a failed evaluation")
        return value

    study = optuna.create_study(sampler=_sampler())
    study.optimize(objective, n_trials=8, catch=(RuntimeError,))
    assert [t.state == TrialState.COMPLETE for t in study.trials] == [False] * 3 + [True] * 5
    # Batch 1 learns from one trial: too few for a predictor, so its trials are random.
    assert study.user_attrs["surrogate:batch:0001"]["params"] == []
    assert len(study.user_attrs["surrogate:batch:0002"]["params"]) == 2
