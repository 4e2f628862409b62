"""The surrogate-assisted NSGA-II sampler on NAS-Bench-201 (table lookups: seconds per search)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.samplers.selection import ExpectedGain, Outcomes, select_batch
from optnas.spaces import MobileNetV3Space, NASBench201Space
from optnas.studies.search import start_search
from tests.forked import Forked


def _config(tmp_path: Path, **overrides: object) -> SearchConfig:
    values = {"search_space": "nasbench201", "dataset": "cifar10", "sec_obj": "params", "n_doe": 10,
              "iterations": 3, "n_iter": 5, "predictor": "rbf", "save": str(tmp_path / "run")}
    values.update(overrides)
    return SearchConfig(**values).validate()


def _evaluated_subnets(study: optuna.Study) -> list[str]:
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    return [json.dumps(t.user_attrs["subnet"]) for t in sorted(complete, key=lambda t: t.number)
            if "duplicate_of" not in t.user_attrs]


def test_select_batch_fills_the_front_and_skips_infeasible() -> None:
    front = np.array([[10.0, 1.0], [2.0, 9.0]])
    candidates = np.array([[5.0, 5.0], [9.0, 1.5], [1.0, 1.0], [4.0, 4.0]])
    violation = np.array([0.0, 0.0, 1.0, 0.0])
    picked = select_batch(candidates, violation, 2, front, (100.0, 20.0))
    assert picked[0] == 3 and 2 not in picked


def test_select_batch_picks_first_the_candidate_expected_to_gain_most() -> None:
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    # Candidate 0's optimistic prediction sits behind the front; one draw in four reaches far
    # past it. Candidate 1 fills a small gap whatever the draw; candidate 2 gains only in draws
    # where it breaks its constraint.
    candidates = np.array([[0.8, 0.8], [0.45, 0.45], [0.8, 0.8]])
    drawn = np.repeat(candidates[None], 4, axis=0)
    drawn[0, 0] = drawn[1, 2] = drawn[2, 2] = [-0.5, -0.5]
    excess = np.zeros((4, 3))
    excess[1:3, 2] = 1.0
    reference = (1.1, 1.1)
    assert select_batch(candidates, np.zeros(3), 1, front, reference) == [1]
    outcomes = Outcomes(drawn, excess, picks=1)
    # The first pick by the expected gain (2.10 / 4 against 0.0525), the second by the predictions.
    assert select_batch(candidates, np.zeros(3), 2, front, reference, outcomes) == [0, 1]
    # Expected gains need not be positive: without any, the picks are the predictions'.
    assert select_batch(candidates, np.zeros(3), 1, front, reference,
                        Outcomes(np.repeat(candidates[None], 4, axis=0), excess, picks=1)) == [1]


def test_expected_gain_keeps_one_pick_in_five_whatever_the_batch_size() -> None:
    rule = ExpectedGain(every=5)
    # Batches of five: the first of each; batches of one: every fifth.
    assert [rule.picks(first, 5) for first in range(0, 25, 5)] == [1] * 5
    assert [rule.picks(first, 1) for first in range(10)] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    # Any batch: the multiples of five among its picks' numbers, counted one by one.
    for first in range(12):
        for n in range(1, 12):
            assert rule.picks(first, n) == sum(j % 5 == 0 for j in range(first, first + n))
    with pytest.raises(ValueError, match="at least 1"):
        ExpectedGain(every=0)


def test_select_batch_fills_with_candidates_far_from_what_was_evaluated() -> None:
    # Neither candidate adds hypervolume. The first sits next to an evaluated point, the
    # second in the open: NSGA-II's crowding calls both boundaries; the batch wants the second.
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    candidates = np.array([[1.02, 0.0], [0.55, 0.9]])
    assert select_batch(candidates, np.zeros(2), 1, front, (1.1, 1.1)) == [1]
    assert select_batch(candidates, np.zeros(2), 2, front, (1.1, 1.1)) == [1, 0]


def test_vectorised_canonical_form_matches_the_dict_form() -> None:
    space = MobileNetV3Space.from_range(32, 64, 16)
    rng = np.random.default_rng(1)
    vectors = np.stack([rng.integers(len(c), size=64) for c in space.choices()], axis=1)
    expected = np.array([space.to_vector(space.from_vector(v)) for v in vectors])
    assert (space.canonical_vectors(vectors) == expected).all()


def test_search_starts_with_design_and_never_repeats_an_architecture(tmp_path: Path) -> None:
    config = _config(tmp_path)
    study = start_search(config, f"sqlite:///{tmp_path / 's.db'}", progress=False)
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    assert len(complete) == config.budget
    space = NASBench201Space()
    first = [t.user_attrs["subnet"] for t in complete[:2]]
    assert first == [space.smallest(), space.largest()]
    subnets = _evaluated_subnets(study)
    assert len(subnets) == len(set(subnets)) == config.budget
    for k in range(1, config.iterations + 1):
        batch = study.user_attrs[f"surrogate:batch:{k:04d}"]
        assert len(batch["subnets"]) == config.n_iter and batch["n_train"] == 10 + (k - 1) * 5
        iteration = study.user_attrs[f"iteration:{k:04d}"]
        assert -1.0 <= iteration["predictor"]["kendall_tau"] <= 1.0 and iteration["predictor"]["n"] == 5
    hvs = [study.user_attrs[f"iteration:{k:04d}"]["hv"] for k in range(config.iterations + 1)]
    assert hvs == sorted(hvs)


def test_same_seed_same_candidates_other_seed_other(tmp_path: Path) -> None:
    runs = []
    for index, seed in enumerate([3, 3, 4]):
        folder = tmp_path / str(index)
        folder.mkdir()
        study = start_search(_config(folder, seed=seed), f"sqlite:///{folder / 's.db'}", progress=False)
        runs.append(_evaluated_subnets(study))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_constraints_are_honoured_on_the_pareto_set(tmp_path: Path) -> None:
    config = _config(tmp_path, pmax=0.3, top1min=80.0)
    study = start_search(config, f"sqlite:///{tmp_path / 's.db'}", progress=False)
    assert study.best_trials
    for trial in study.best_trials:
        assert trial.user_attrs["params"] <= 0.3 and trial.user_attrs["top1"] >= 80.0
    # Costs are exact in the surrogate, so proposed candidates respect the params bound.
    for k in range(1, config.iterations + 1):
        proposed = study.user_attrs[f"surrogate:batch:{k:04d}"]["subnets"]
        params = [t.user_attrs["params"] for t in study.trials if t.user_attrs.get("subnet") in proposed]
        assert params and max(params) <= 0.3


def test_threads_share_the_sampler_without_duplicates(tmp_path: Path) -> None:
    config = _config(tmp_path)
    study = start_search(config, f"sqlite:///{tmp_path / 's.db'}", progress=False, n_jobs=3)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= config.budget
    subnets = _evaluated_subnets(study)
    assert len(subnets) == len(set(subnets))


_WORKER = """
import sys
from optnas.studies.search import continue_search
continue_search(sys.argv[1], sys.argv[2], {}, progress=False)
"""


def _two_processes(url: str, name: str, cwd: Path) -> None:
    workers = [Forked(["-c", _WORKER, url, name], cwd) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err


def _create(config: SearchConfig, url: str, name: str) -> None:
    from optnas.studies.study import create_search_study

    create_search_study(config, url, name)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_on_one_storage_never_duplicate(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                        unique_name: str) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    config = _config(tmp_path)
    _create(config, url, unique_name)
    try:
        _two_processes(url, unique_name, tmp_path)
        study = optuna.load_study(study_name=unique_name, storage=url, sampler=optuna.samplers.RandomSampler())
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(complete) >= config.budget
        subnets = _evaluated_subnets(study)
        assert len(subnets) == len(set(subnets)), "two workers evaluated the same architecture"
        numbers = sorted(t.number for t in study.trials)
        assert numbers == list(range(len(numbers)))
    finally:
        if backend == "postgresql":
            optuna.delete_study(study_name=unique_name, storage=url)


def _study_with_design(sampler: Any, attrs: Callable[[dict], dict]) -> optuna.Study:
    """An in-memory study holding the sampler's initial design, evaluated by ``attrs``."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number in range(sampler.n_doe):
        subnet = sampler.strategy.space.from_vector(sampler.candidate(study, number))
        figures = attrs(subnet)
        study.add_trial(optuna.trial.create_trial(
            values=[figures["top1"], figures["params"]], user_attrs={"subnet": subnet, **figures},
        ))
    return study


def test_a_second_objective_missing_from_the_costs_gets_its_own_predictor() -> None:
    from optnas.samplers import NASStrategy, SurrogateSampler
    from optnas.spaces.nasbench201 import lookup
    from optnas.studies.quality import batch_quality

    space = NASBench201Space()
    sampler = SurrogateSampler(
        strategy=NASStrategy(space, lambda subnet: {}, objectives=["top1", "params"],
                             constraint_bounds={"top1min": 50.0}),
        n_doe=30, n_iter=6, predictor="rbf", sec_predictor="gp", seed=3,
    )
    assert sampler.strategy.step(sampler.options).predicted_quantities() == ["top1", "params"]
    study = _study_with_design(sampler, lambda subnet: lookup(subnet, "cifar10", 0))
    batch = sampler.batch(study, 1)
    assert len(batch["subnets"]) == 6 and set(batch["predicted"]) == {"top1", "params"}
    assert set(batch["predictors"]) == {"top1", "params"}
    for subnet in batch["subnets"]:
        figures = lookup(subnet, "cifar10", 0)
        study.add_trial(optuna.trial.create_trial(
            values=[figures["top1"], figures["params"]], user_attrs={"subnet": subnet, **figures},
        ))
    quality = batch_quality(study)[1]
    assert quality["quantity"] == "top1" and quality["n"] == 6
    # Model size is additive in the operations (0.07 to 1.53 M here): the GP learns it closely.
    assert quality["sec"]["params"]["n"] == 6 and quality["sec"]["params"]["rmse"] < 0.1


def test_trust_radius_keeps_candidates_near_evaluated_architectures() -> None:
    from optnas.samplers import NASStrategy, SurrogateSampler
    from optnas.spaces.nasbench201 import lookup

    space = NASBench201Space()
    sampler = SurrogateSampler(
        strategy=NASStrategy(space, lambda subnet: {"params": lookup(subnet, "cifar10", 0)["params"]},
                             objectives=["top1", "params"]),
        n_doe=12, n_iter=8, predictor="gp", trust_radius=1, seed=0,
    )
    assert sampler.strategy.step(sampler.options).predicted_quantities() == ["top1"]
    study = _study_with_design(sampler, lambda subnet: lookup(subnet, "cifar10", 0))
    done = np.array([space.to_vector(t.user_attrs["subnet"]) for t in study.trials])
    batch = sampler.batch(study, 1)
    assert len(batch["subnets"]) == 8
    for subnet in batch["subnets"]:
        assert (done != space.to_vector(subnet)).sum(axis=1).min() == 1
