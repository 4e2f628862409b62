"""The MSuNAS step on its own: arrays in, a batch out, no study."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from optnas.samplers.design import initial_design
from optnas.samplers.msunas import (
    EXTENDED_REFERENCE,
    SCALED_REFERENCE,
    Evaluated,
    MSuNASStep,
    Proposal,
    _selection_space,
)
from optnas.samplers.selection import select_batch
from optnas.spaces import NASBench201Space

SPACE = NASBench201Space()
# Synthetic model sizes (M): convolutions cost, pooling and skips almost nothing.
OP_PARAMS = {"none": 0.0, "skip_connect": 0.0, "avg_pool_3x3": 0.01, "nor_conv_1x1": 0.1, "nor_conv_3x3": 0.3}


def _costs(subnet: dict[str, Any]) -> dict[str, float]:
    return {"params": 0.05 + sum(OP_PARAMS[op] for op in subnet["ops"])}


def _top1(vectors: np.ndarray) -> np.ndarray:
    """A synthetic accuracy (%): live input-output paths and the convolutions on them help."""
    features = SPACE.features(vectors)
    conv_1x1, conv_3x3, live_paths = features[:, 32], features[:, 33], features[:, 34:38].sum(axis=1)
    return 50.0 + 2.0 * conv_1x1 + 4.0 * conv_3x3 + 5.0 * live_paths


def _evaluated(n: int = 20, params_bound: float | None = None) -> Evaluated:
    vectors = initial_design(SPACE, n, seed=0)
    params = np.array([_costs(SPACE.from_vector(v))["params"] for v in vectors])
    feasible = params <= params_bound if params_bound is not None else np.ones(n, dtype=bool)
    return Evaluated(vectors=vectors, observed={"top1": _top1(vectors), "params": params},
                     feasible=feasible, seen=vectors)


def _step(**overrides: Any) -> MSuNASStep:
    options = dict(objectives=["top1", "params"], constraint_bounds={}, predictor="rbf", trust_radius=2,
                   population_size=40, generations=10)
    options.update(overrides)
    costs = options.pop("costs", _costs)
    return MSuNASStep(SPACE, costs, **options)


def _distances(vectors: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Each row's smallest number of genes differing from a row of ``done``."""
    return np.array([(done != vector).sum(axis=1).min() for vector in vectors])


def test_step_returns_distinct_new_canonical_candidates_within_the_trust_radius() -> None:
    evaluated = _evaluated()
    proposal = _step()(evaluated, 8, seed=0, k=1)
    chosen = proposal.vectors
    assert chosen.shape == (8, 6)
    assert len(np.unique(chosen, axis=0)) == 8
    assert (SPACE.canonical_vectors(chosen) == chosen).all()
    assert ((distance := _distances(chosen, evaluated.vectors)) >= 1).all() and (distance <= 2).all()
    # Model size is exact from the costs: only the accuracy is predicted.
    assert set(proposal.predicted) == {"top1"} and proposal.predicted["top1"].shape == (8,)
    assert proposal.predictors == {"top1": "RBFPredictor"} and proposal.n_train == 20


def test_step_is_deterministic_for_a_seed_and_batch_index() -> None:
    evaluated = _evaluated()
    first, again = (_step()(evaluated, 8, seed=3, k=2) for _ in range(2))
    np.testing.assert_array_equal(first.vectors, again.vectors)
    np.testing.assert_array_equal(first.predicted["top1"], again.predicted["top1"])


def test_step_never_proposes_an_architecture_already_taken() -> None:
    evaluated = _evaluated()
    proposal = _step()(evaluated, 8, seed=0, k=1)
    # Had a repeat trial already taken these (duplicates are not training data), the step moves on.
    taken = Evaluated(vectors=evaluated.vectors, observed=evaluated.observed, feasible=evaluated.feasible,
                      seen=np.concatenate([evaluated.vectors, proposal.vectors]))
    later = _step()(taken, 8, seed=0, k=1)
    assert len(later.vectors) == 8 and (_distances(later.vectors, taken.seen) >= 1).all()


def test_step_keeps_to_the_feasible_side_of_a_constraint() -> None:
    def largest(proposal: Proposal) -> float:
        return max(_costs(SPACE.from_vector(v))["params"] for v in proposal.vectors)

    evaluated = _evaluated(params_bound=0.3)
    assert 0 < evaluated.feasible.sum() < len(evaluated.feasible)
    # Unbounded, the batch goes past 0.3 M; bounded, it stays under (sizes are exact).
    assert largest(_step()(evaluated, 8, seed=0, k=1)) > 0.3
    proposal = _step(constraint_bounds={"params": 0.3})(evaluated, 8, seed=0, k=1)
    assert len(proposal.vectors) == 8 and largest(proposal) <= 0.3


def test_step_returns_fewer_when_the_trust_region_is_exhausted() -> None:
    # The smallest and the largest cell have 6 × 4 one-gene neighbours each, none shared,
    # of which 26 are not redundant: the smallest's 4 with an operation on edge 0→3 (on any
    # other edge it reaches no path), the largest's 22 but those with none on 0→1 or 2→3 (which
    # cut every path through node 1 or 2). Asked for more, the step returns those 26.
    evaluated = _evaluated(n=2)
    proposal = _step(trust_radius=1)(evaluated, 60, seed=0, k=1)
    assert len(proposal.vectors) == 26 == len(np.unique(proposal.vectors, axis=0))
    assert (_distances(proposal.vectors, evaluated.vectors) == 1).all()


def _reaches(edges: list[tuple[int, int]], start: int, goal: int) -> bool:
    """Whether ``goal`` is reachable from ``start`` along the directed ``edges``."""
    frontier, seen = [start], {start}
    while frontier:
        node = frontier.pop()
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                frontier.append(b)
    return goal in seen


def test_reduced_cells_drop_the_operations_no_input_to_output_path_uses() -> None:
    """Checked by graph reachability over all 15,625 cells, not by the space's path list."""
    ends = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]  # NAS-Bench-201's edge order
    cells = np.array(np.meshgrid(*[range(5)] * 6, indexing="ij")).reshape(6, -1).T
    expected = cells.copy()
    for row, cell in enumerate(cells):
        kept = [ends[e] for e in range(6) if cell[e] != 0]
        for e in range(6):
            if not (_reaches(kept, 0, ends[e][0]) and _reaches(kept, ends[e][1], 3)):
                expected[row, e] = 0
    np.testing.assert_array_equal(SPACE.reduced(cells), expected)
    assert SPACE.redundant(cells).sum() == 6180
    # The reduced cell computes the same: the sampler's features cannot tell them apart.
    np.testing.assert_array_equal(SPACE.features(cells), SPACE.features(expected))


def test_a_redundant_cell_is_proposed_only_where_its_reduced_form_costs_more() -> None:
    """With model size, never (removing operations never adds parameters); with a cost where
    'none' is dear (as a measured latency can be, by noise), the redundant cells stay."""
    cells = np.array(np.meshgrid(*[range(5)] * 6, indexing="ij")).reshape(6, -1).T
    no_history = cells[:0]
    np.testing.assert_array_equal(_step()._allowed(cells, no_history), ~SPACE.redundant(cells))

    def none_is_dear(subnet: dict[str, Any]) -> dict[str, float]:
        return {"params": _costs(subnet)["params"] + subnet["ops"].count("none")}

    assert _step(costs=none_is_dear)._allowed(cells, no_history).all()


def test_neither_the_design_nor_a_step_proposes_a_redundant_cell() -> None:
    """A cell computing what a cheaper cell computes is never worth an evaluation."""
    assert not SPACE.redundant(initial_design(SPACE, 30, seed=3)).any()
    for k in range(3):
        proposal = _step()(_evaluated(), n=10, seed=0, k=k)
        assert len(proposal.vectors) == 10
        assert not SPACE.redundant(proposal.vectors).any()


def test_path_features_count_the_paths_made_of_each_operation_subset() -> None:
    """conv3x3 on 0→1 and 1→3, skip on 0→3, none elsewhere: paths (skip) and (conv, conv) live."""
    vector = np.array([[4, 0, 0, 1, 4, 0]])
    features = SPACE.features(vector)[0]
    subsets = [s for r in range(1, 5) for s in itertools.combinations((1, 2, 3, 4), r)]
    stats = {subset: tuple(features[42 + 3 * i: 45 + 3 * i]) for i, subset in enumerate(subsets)}
    assert stats[(4,)] == (1, 2, 2)  # one path of convolutions 3x3 only, two edges long
    assert stats[(1,)] == (1, 1, 1)  # the skip edge alone
    assert stats[(1, 4)] == (2, 1, 2)
    assert stats[(2, 3)] == (0, 0, 0)


def test_a_candidate_past_the_fronts_costliest_point_is_credited_for_its_better_objective() -> None:
    # The evaluated front, scaled: (error, cost) from the most accurate to the cheapest point.
    front = np.array([[0.0, 1.0], [1.0, 0.0]])
    candidates = np.array([
        [-0.2, 3.0],  # more accurate than the front's best, at three times the front's cost span
        [0.9, 0.9],   # a small gap inside the front
    ])
    credited, reference = _selection_space(candidates)
    np.testing.assert_array_equal(credited, [[-0.2, SCALED_REFERENCE], [0.9, 0.9]])
    assert select_batch(credited, np.zeros(2), 1, front, reference) == [0]
    # In the front's own box the accurate candidate adds nothing: the front could not grow there.
    assert select_batch(candidates, np.zeros(2), 1, front, (SCALED_REFERENCE,) * 2) == [1]


def test_draws_of_candidates_are_credited_as_the_candidates_are() -> None:
    drawn = np.array([[[-0.2, 3.0], [0.9, 0.9]], [[0.5, 1.2], [2.0, -0.1]]])
    credited, reference = _selection_space(drawn)
    np.testing.assert_array_equal(credited, np.minimum(drawn, SCALED_REFERENCE))
    assert reference == (EXTENDED_REFERENCE,) * 2


def test_with_three_objectives_the_selection_space_is_the_scaled_one() -> None:
    scaled = np.array([[-0.2, 3.0, 0.5]])
    credited, reference = _selection_space(scaled)
    np.testing.assert_array_equal(credited, scaled)
    assert reference == (SCALED_REFERENCE,) * 3


def test_the_front_is_judged_by_the_posterior_mean_where_a_model_estimates_noise() -> None:
    from optnas.predictors.grouped_gp import GroupedGPPredictor

    # Every architecture measured twice, as a noisy table's runs: no model can interpolate both.
    once = _evaluated(15)
    vectors = np.concatenate([once.vectors, once.vectors])
    runs = np.concatenate([once.observed["top1"]] * 2) + np.random.default_rng(0).normal(0.0, 2.0, 30)
    evaluated = Evaluated(vectors=vectors, observed={"top1": runs, "params": np.tile(once.observed["params"], 2)},
                          feasible=np.ones(30, dtype=bool), seen=vectors)
    features = SPACE.features(vectors)
    for predictor in (GroupedGPPredictor(), "rbf"):
        step = _step(predictor=predictor)
        models = step._fit(evaluated, features, random_state=0)
        judged = step._judged(models, evaluated, features)
        np.testing.assert_array_equal(judged["params"], evaluated.observed["params"])
        if isinstance(predictor, str):
            # A model without a noise term: the measurements stand.
            np.testing.assert_array_equal(judged["top1"], runs)
        else:
            assert models["top1"].noise_ > 1e-3
            np.testing.assert_allclose(judged["top1"], models["top1"].predict(features))
            # Both runs of an architecture are judged alike, between the two measurements.
            np.testing.assert_allclose(judged["top1"][:15], judged["top1"][15:])
            low, high = np.minimum(runs[:15], runs[15:]), np.maximum(runs[:15], runs[15:])
            assert np.mean((judged["top1"][:15] > low) & (judged["top1"][:15] < high)) > 0.5


def test_an_optimistic_prediction_is_the_posteriors_quantile_through_its_skew() -> None:
    from optnas.predictors.grouped_gp import GroupedGPPredictor

    # A few cells that fail to learn (top1 10 %): the warped posterior between them and the rest is
    # skewed, and a deviation taken symmetrically would reach far past where its draws go.
    once = _evaluated(24)
    top1 = once.observed["top1"].copy()
    top1[::6] = 10.0
    evaluated = Evaluated(vectors=once.vectors, observed={"top1": top1, "params": once.observed["params"]},
                          feasible=once.feasible, seen=once.seen)
    step = _step(predictor=GroupedGPPredictor())
    models = step._fit(evaluated, SPACE.features(evaluated.vectors), random_state=0)
    vectors = SPACE.canonical_vectors(np.random.default_rng(1).integers(0, 5, size=(300, 6)))
    optimistic = step._predictions(models, vectors, optimism=1.0)["top1"]
    draws = step._predictions(models, vectors, normal=np.random.default_rng(2).standard_normal((4000, 300)))["top1"]
    # As many draws beat the bound as a normal's beat its mean plus one deviation: 15.9 %.
    beaten = (draws > optimistic + 1e-9).mean(axis=0)
    # Where the bound reaches either end of the map (its clip, or the failed cells' shared 10 %,
    # a floor) or top1's 100 %, the draws pile up on it: those rows say nothing.
    warp = models["top1"].warp_
    high = min(warp.high, 100.0)
    spread = (draws.std(axis=0) > 1.0) & (optimistic < high - 1e-9) & (optimistic > warp.low + 1e-9)
    assert spread.sum() > 30
    np.testing.assert_allclose(beaten[spread], 0.159, atol=0.03)
