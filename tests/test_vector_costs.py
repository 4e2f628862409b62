"""Exact costs of whole arrays of gene vectors: the same figures as ``exact_costs``, one by one.

The surrogate sampler costs its offspring through ``exact_costs_vectors``; these tests hold it
to the scalar model on random vectors (canonical or not) of several spaces and options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optnas.config import SearchConfig
from optnas.evaluation.costs import exact_costs, exact_costs_vectors
from optnas.latency.table import (
    TABLE_FORMAT,
    LatencyTableError,
    layer_key,
    space_layers,
)
from optnas.samplers.design import initial_design
from optnas.samplers.msunas import Evaluated, MSuNASStep
from optnas.spaces.mobilenetv3 import MobileNetV3Space

N_VECTORS = 300


def _vectors(space: MobileNetV3Space, n: int, seed: int = 0) -> np.ndarray:
    """Uniform random gene vectors, inactive slots left random: the sampler's offspring are not canonical."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(len(values), size=n) for values in space.choices()])


def _write_table(path: Path, space: MobileNetV3Space, n_classes: int, drop: str | None = None) -> Path:
    rng = np.random.default_rng(1)
    keys = [key for key in space_layers(space.widths, space.resolutions, n_classes) if key != drop]
    data = {"format": TABLE_FORMAT, "n_classes": n_classes, "overhead_ms": 0.37,
            "layers": {key: {"ms": float(rng.uniform(0.01, 1.0))} for key in keys}}
    path.write_text(json.dumps(data))
    return path


def _assert_same_costs(config: SearchConfig, space: MobileNetV3Space, vectors: np.ndarray) -> dict[str, np.ndarray]:
    costs = config.cost_options()
    vector_costs = exact_costs_vectors(costs, space)
    assert vector_costs is not None
    got = vector_costs(vectors)
    rows = [exact_costs(costs, space.from_vector(vector)) for vector in vectors]
    assert list(got) == list(rows[0])
    for name, values in got.items():
        assert values.shape == (len(vectors),)
        # The same sums in the same order: equal to the bit, not merely close.
        np.testing.assert_array_equal(values, [row[name] for row in rows], err_msg=name)
    return got


@pytest.mark.parametrize(
    ("options", "space"),
    [
        ({}, None),
        ({"n_classes": 1000, "width_mult": 1.2}, None),
        ({"min_resolution": 16, "max_resolution": 64, "resolution_step": 8,
          "pmax": 3.5, "mmax": 13.0, "amax": 0.25}, None),
        ({"n_classes": 1000}, MobileNetV3Space(resolutions=[32, 96, 224], search_width=True)),
    ],
    ids=["default", "w1.2-1000-classes", "resolutions-bounded", "width-searched"],
)
@pytest.mark.parametrize("with_table", [False, True], ids=["no-table", "table"])
def test_vectorised_costs_equal_the_scalar_ones(
    tmp_path: Path, options: dict[str, Any], space: MobileNetV3Space | None, with_table: bool
) -> None:
    config = SearchConfig(dataset="digits", **options).validate()
    space = space or config.make_space()
    if with_table:
        lut = _write_table(tmp_path / "lut.json", space, config.class_count())
        config = SearchConfig(dataset="digits", latency_table=str(lut), **options).validate()
    got = _assert_same_costs(config, space, _vectors(space, N_VECTORS))
    assert ("latency" in got) == with_table
    if "pmax" in options:
        # Both sides of every bound are exercised, so tiny_ml's penalty is compared too.
        for name, bound in (("params", 3.5), ("macs", 13.0), ("activations", 0.25)):
            assert (got[name] > bound).any() and (got[name] <= bound).any(), name


def test_one_vector_and_the_smallest_and_largest_subnets(tmp_path: Path) -> None:
    config = SearchConfig(dataset="digits", min_resolution=24, max_resolution=40).validate()
    space = config.make_space()
    edges = np.array([space.to_vector(space.smallest()), space.to_vector(space.largest())])
    _assert_same_costs(config, space, edges)
    single = exact_costs_vectors(config.cost_options(), space)(edges[1])
    assert single["macs"].shape == (1,)


def test_a_missing_table_entry_fails_as_the_scalar_prediction_does(tmp_path: Path) -> None:
    space = MobileNetV3Space(resolutions=[32])
    missing = layer_key({"kind": "mbconv", "w": 1.0, "stage": 4, "first": False, "k": 7, "e": 6, "size": 1})
    lut = _write_table(tmp_path / "lut.json", space, 10, drop=missing)
    costs = SearchConfig(dataset="digits", latency_table=str(lut)).validate().cost_options()
    vector_costs = exact_costs_vectors(costs, space)
    largest = space.to_vector(space.largest())
    with pytest.raises(LatencyTableError) as scalar:
        exact_costs(costs, space.largest())
    with pytest.raises(LatencyTableError) as vectorised:
        vector_costs(np.array([space.to_vector(space.smallest()), largest]))
    assert str(vectorised.value) == str(scalar.value)
    assert missing in str(scalar.value)
    # Subnets that do not run the layer are costed all the same.
    assert np.isfinite(vector_costs(space.to_vector(space.smallest())[None])["latency"]).all()


def test_spaces_without_a_vectorised_form_give_none() -> None:
    early_exits = SearchConfig(search_space="eemobilenetv3", dataset="digits").validate()
    assert exact_costs_vectors(early_exits.cost_options()) is None
    nasbench201 = SearchConfig(search_space="nasbench201", dataset="cifar10", sec_obj="params").validate()
    assert exact_costs_vectors(nasbench201.cost_options()) is None


def test_the_surrogate_step_proposes_the_same_candidates_either_way() -> None:
    config = SearchConfig(dataset="digits", min_resolution=16, max_resolution=32, resolution_step=8,
                          sec_obj="macs", pmax=1.5).validate()
    costs = config.cost_options()
    space = costs.space
    history = initial_design(space, 16, seed=0)
    rows = [exact_costs(costs, space.from_vector(vector)) for vector in history]
    observed = {"top1": 60.0 + np.log([row["macs"] for row in rows]),
                **{name: np.array([row[name] for row in rows]) for name in ("macs", "params")}}
    evaluated = Evaluated(vectors=history, observed=observed, feasible=observed["params"] <= 1.5, seen=history)
    options = {"objectives": ["top1", "macs"], "constraint_bounds": {"params": 1.5}, "predictor": "rbf",
                   "population_size": 24, "generations": 3}
    plain = MSuNASStep(space, lambda subnet: exact_costs(costs, subnet), **options)
    vectorised = MSuNASStep(space, lambda subnet: exact_costs(costs, subnet),
                            vector_costs=exact_costs_vectors(costs, space), **options)
    offspring = _vectors(space, 50, seed=3)
    for name, values in plain._exact(offspring, ["macs", "params", "tiny_ml"]).items():
        np.testing.assert_array_equal(vectorised._exact(offspring, [name])[name], values)
    first, second = plain(evaluated, 4, seed=0, k=1), vectorised(evaluated, 4, seed=0, k=1)
    np.testing.assert_array_equal(second.vectors, first.vectors)


def test_sampler_with_vector_costs_pickles():
    """The NAS sampler holding vectorised costs survives pickling (to resume with it), costs intact."""
    import pickle

    from optnas.studies.sampling import make_sampler

    config = SearchConfig(dataset="digits", sec_obj="macs").validate()
    sampler = make_sampler(config)
    space = config.make_space()
    vectors = np.stack([space.to_vector(subnet) for subnet in space.sample(np.random.default_rng(0), 5)])
    before = sampler.strategy.step(sampler.options).vector_costs(vectors)
    copy = pickle.loads(pickle.dumps(sampler))
    after = copy.strategy.step(copy.options).vector_costs(vectors)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values)


def test_the_tflite_micro_figures_are_computed_only_when_named() -> None:
    # They lay out each network's arena (about 1 ms each): a search that neither optimises nor
    # bounds them must not pay for them on every offspring.
    config = SearchConfig(dataset="digits", width_mult=0.35).validate()
    space = config.make_space()
    vector_costs = exact_costs_vectors(config.cost_options(), space)
    vectors = _vectors(space, 20)
    every = vector_costs(vectors)
    assert "arena_kb" not in vector_costs(vectors, ["params", "macs"])
    named = vector_costs(vectors, ["arena_kb"])
    for name in ("arena_kb", "arena_head_kb", "arena_tail_kb", "tflite_kb"):
        np.testing.assert_array_equal(named[name], every[name])
