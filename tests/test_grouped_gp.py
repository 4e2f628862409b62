"""The plain form's Gaussian process: a length scale per parameter, normal-score targets, a spread."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.optimize
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern
from sklearn.utils.estimator_checks import parametrize_with_checks

from optnas.predictors import kendall_tau
from optnas.predictors.grouped_gp import (
    GroupedGPPredictor,
    _additive_negative_log_posterior,
    _KeptMoments,
    _matern,
    _negative_log_posterior,
    _scaled,
)
from optnas.samplers.optuna_space import OptunaSpace


@pytest.fixture(scope="module")
def mixed() -> tuple[OptunaSpace, np.ndarray, np.ndarray]:
    """A space of one float, one ordered and one unordered category; a target of two of them."""
    space = OptunaSpace({
        "x": FloatDistribution(0.0, 1.0),
        "width": CategoricalDistribution([8, 16, 32, 64]),
        "kind": CategoricalDistribution(["a", "b", "c", "d", "e"]),
    }, levels=16)
    rng = np.random.default_rng(0)
    vectors = np.column_stack([rng.integers(len(v), size=120) for v in space.choices()])
    points = [space.from_vector(v) for v in vectors]
    offsets = {"a": 0.0, "b": 2.0, "c": 0.5, "d": 1.0, "e": 3.0}
    # "width" does not matter at all; "x" is smooth, "kind" a lookup.
    y = np.array([np.sin(3 * p["x"]) + offsets[p["kind"]] for p in points])
    return space, space.features(vectors), y


@parametrize_with_checks([GroupedGPPredictor(n_restarts=0), GroupedGPPredictor(n_restarts=0, warp=False),
                          GroupedGPPredictor(n_restarts=0, warp="auto")])
def test_sklearn_compatible(estimator: GroupedGPPredictor, check: Any) -> None:
    check(estimator)


@pytest.mark.parametrize("continuous", [(False, False, False), (True, True, False)])
def test_gradient_of_the_marginal_likelihood_is_exact(mixed: tuple[Any, ...], continuous: tuple[bool, ...]) -> None:
    space, X, y = mixed
    groups, one_hot = space.feature_groups()
    model = GroupedGPPredictor(groups=groups, categorical=one_hot, random_state=0).fit(X[:40], y[:40])
    distances = model._group_distances(model.Z_, model.Z_)
    t = (model.warp_.scores - model.y_mean_) / model.y_scale_
    charged = np.array(continuous)
    # Length scales on both sides of 1, where a continuous parameter's charge starts.
    for theta in ([0.3, -0.2, 0.5, 0.1, -3.0], [-1.0, 1.0, -0.5, 2.0, -6.0]):
        error = scipy.optimize.check_grad(lambda a: _negative_log_posterior(a, distances, t, charged)[0],
                                          lambda a: _negative_log_posterior(a, distances, t, charged)[1],
                                          np.array(theta))
        gradient = _negative_log_posterior(np.array(theta), distances, t, charged)[1]
        assert error < 1e-4 * max(1.0, np.abs(gradient).max())


def test_without_warp_it_is_sklearns_posterior_with_an_ard_kernel(mixed: tuple[Any, ...]) -> None:
    """Each column its own group and no category: the kernel is sklearn's ARD Matérn-5/2."""
    _, X, y = mixed
    model = GroupedGPPredictor(warp=False, additive=False, random_state=0).fit(X[:60], y[:60])
    kernel = ConstantKernel(np.exp(model.log_amplitude_)) * Matern(model.length_scales_, nu=2.5)
    reference = GaussianProcessRegressor(kernel, alpha=model.noise_ + 1e-9, optimizer=None, normalize_y=True)
    reference.fit(model.scaler_(X[:60]), y[:60])
    mean, std = reference.predict(model.scaler_(X[60:]), return_std=True)
    np.testing.assert_allclose(model.predict(X[60:]), mean, atol=1e-6)
    np.testing.assert_allclose(model.predict_std(X[60:]), std, atol=1e-6)
    both = model.predict_std(X[60:], return_mean=True)
    np.testing.assert_allclose(both[0], mean, atol=1e-6)
    np.testing.assert_allclose(both[1], std, atol=1e-6)


@pytest.mark.parametrize("seed", [1, 5])
def test_a_continuous_parameter_is_not_switched_off_beside_a_rugged_one(seed: int) -> None:
    # WFG2's shape: ridges along one parameter dwarf four small, real effects.
    rng = np.random.default_rng(seed)
    X = rng.random((40, 5))
    y = 4 * np.cos(5 * np.pi * X[:, 0]) ** 2 + 0.5 * np.abs(X[:, 1:] - 0.35).sum(axis=1)
    free = GroupedGPPredictor(random_state=0).fit(X, y).length_scales_[1:]
    charged = GroupedGPPredictor(continuous=(True,) * 5, random_state=0).fit(X, y).length_scales_[1:]
    assert free.max() > 4.0 and charged.max() < 3.0


def test_an_irrelevant_parameter_gets_a_long_length_scale(mixed: tuple[Any, ...]) -> None:
    space, X, y = mixed
    groups, one_hot = space.feature_groups()
    # Parameters in name order: kind, width, x; only kind is one-hot (width is ordered by value).
    assert one_hot == (True, False, False)
    model = GroupedGPPredictor(groups=groups, categorical=one_hot, random_state=0).fit(X[:80], y[:80])
    kind, width, x = model.length_scales_
    assert width > 3 * max(kind, x)
    assert kendall_tau(y[80:], model.predict(X[80:])) > 0.7


def test_spread_is_small_at_samples_and_grows_away_from_them(mixed: tuple[Any, ...]) -> None:
    space, X, y = mixed
    groups, one_hot = space.feature_groups()
    model = GroupedGPPredictor(groups=groups, categorical=one_hot, random_state=0).fit(X[:10], y[:10])
    seen, unseen = model.predict_std(X[:10]), model.predict_std(X[10:])
    # With the warp too, the mean returned beside the spread is predict's.
    np.testing.assert_allclose(model.predict_std(X[10:], return_mean=True)[0], model.predict(X[10:]))
    assert seen.max() < np.median(unseen)
    assert (unseen >= 0).all()


@pytest.mark.parametrize("warp", [False, True])
def test_draws_follow_the_posterior(mixed: tuple[Any, ...], warp: bool) -> None:
    space, X, y = mixed
    groups, one_hot = space.feature_groups()
    model = GroupedGPPredictor(groups=groups, categorical=one_hot, warp=warp, random_state=0).fit(X[:15], y[:15])
    mean, std = model.predict_std(X[15:], return_mean=True)
    n = len(X) - 15
    # The draw at 0 deviations is the prediction; draws rise with the normal numbers.
    draws = model.predict_draws(X[15:], np.array([np.zeros(n), np.full(n, -1.0), np.ones(n)]))
    np.testing.assert_allclose(draws[0], mean)
    assert (draws[1] <= draws[0]).all() and (draws[0] <= draws[2]).all()
    # predict_std is half the width of the one-deviation interval (without warp: mean ± std).
    np.testing.assert_allclose((draws[2] - draws[1]) / 2, std, atol=1e-9)
    if not warp:
        np.testing.assert_allclose(draws[2], mean + std)
    # Many draws: their spread matches the posterior's (without warp, exactly normal).
    normal = np.random.default_rng(0).standard_normal((4000, n))
    spread = model.predict_draws(X[15:], normal).std(axis=0)
    ratio = np.median(spread / np.maximum(std, 1e-12))
    assert 0.8 < ratio < 1.2 if warp else 0.95 < ratio < 1.05


def test_kept_moments_match_a_fresh_model(mixed: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    space, X, y = mixed
    groups, one_hot = space.feature_groups()
    monkeypatch.setattr("optnas.predictors.grouped_gp._MOMENTS_KEPT", 30)
    model = GroupedGPPredictor(groups=groups, categorical=one_hot, random_state=0).fit(X[:20], y[:20])
    fresh = GroupedGPPredictor(groups=groups, categorical=one_hot, random_state=0).fit(X[:20], y[:20])
    # Rows scored in small blocks, then all at once beside rows never seen (past the 30 kept),
    # give what one pass of an unused model gives; a refit forgets them.
    for start in range(20, 60, 7):
        model.predict_std(X[start:start + 7])
    normal = np.random.default_rng(0).standard_normal((3, len(X) - 20))
    np.testing.assert_allclose(model.predict_draws(X[20:], normal), fresh.predict_draws(X[20:], normal), atol=1e-12)
    np.testing.assert_allclose(model.predict_std(X[20:], return_mean=True), fresh.predict_std(X[20:], return_mean=True),
                               atol=1e-12)
    assert len(model._moments) == 30
    model.fit(X[20:40], y[20:40])
    assert not model._moments
    np.testing.assert_allclose(model.predict(X[:20]), fresh.fit(X[20:40], y[20:40]).predict(X[:20]), atol=1e-12)


def test_normal_scores_map_back_to_the_targets_and_tame_outliers() -> None:
    rng = np.random.default_rng(1)
    X = rng.random((30, 2))
    y = X.sum(axis=1)
    y[:3] = 1000.0  # three networks that did not learn, say
    model = GroupedGPPredictor(random_state=0).fit(X, y)
    # Mapping the training targets' normal scores back gives the targets.
    np.testing.assert_allclose(model.warp_.values(model.warp_.scores), y)
    # Predictions stay within a tenth of the range past the targets, and rank the rest well.
    predicted = model.predict(rng.random((200, 2)))
    span = y.max() - y.min()
    assert predicted.min() >= y.min() - span / 10 and predicted.max() <= y.max() + span / 10
    assert kendall_tau(y[3:], model.predict(X[3:])) > 0.9


def test_an_extreme_that_several_trials_share_bounds_every_draw() -> None:
    rng = np.random.default_rng(2)
    X = rng.random((40, 2))
    # A size with a floor: a third of the trials hold the smallest network (1.0).
    size = 1.0 + 10.0 * np.maximum(X[:, 0] - 0.3, 0.0) + X[:, 1]
    size[X[:, 0] < 0.3] = 1.0
    assert (size == 1.0).sum() >= 2
    normal = np.random.default_rng(3).standard_normal((500, 200))
    candidates = rng.random((200, 2))
    floored = GroupedGPPredictor(random_state=0).fit(X, size).predict_draws(candidates, normal)
    assert floored.min() == 1.0
    # With one smallest trial only, draws reach below it, as far as a tenth of the range.
    size[np.argmin(X[:, 0])] = 0.9
    single = GroupedGPPredictor(random_state=0).fit(X, size).predict_draws(candidates, normal)
    assert single.min() < 0.9


def test_groups_must_cover_the_columns() -> None:
    with pytest.raises(ValueError, match="groups names 2 columns; X has 3"):
        GroupedGPPredictor(groups=(0, 1)).fit(np.eye(3), np.arange(3.0))


@pytest.mark.parametrize("distribution", [IntDistribution(0, 3), CategoricalDistribution([1, 2.5, 7])])
def test_ordered_genes_are_one_column(distribution: Any) -> None:
    space = OptunaSpace({"p": distribution})
    assert space.features(np.arange(len(space.choices()[0]))[:, None]).shape[1] == 1
    assert space.feature_groups() == ((0,), (False,))


def test_categories_that_share_their_choices_are_also_seen_through_their_totals() -> None:
    ops = ["none", "skip", "conv"]
    space = OptunaSpace({
        **{f"op{i}": CategoricalDistribution(ops) for i in range(4)},
        **{f"flag{i}": CategoricalDistribution([False, True]) for i in range(2)},
        "kind": CategoricalDistribution(["none", "skip"]),  # alone with its choices: no totals
        "mixed": CategoricalDistribution(["none", "skip", 2]),  # other choices than the ops
        "width": CategoricalDistribution([1, 2, 4]),  # ordered: one column, no totals
    })
    rng = np.random.default_rng(0)
    vectors = np.column_stack([rng.integers(len(v), size=50) for v in space.choices()])
    points = [space.from_vector(v) for v in vectors]
    features = space.features(vectors)
    groups, one_hot = space.feature_groups()
    # Own columns: flags 1 each, kind 1, mixed 3, ops 3 each, width 1; then 1 total for the
    # flags (two choices) and 3 for the ops.
    own = 1 + 1 + 1 + 3 + 4 * 3 + 1
    assert features.shape == (50, own + 1 + 3)
    assert len(groups) == features.shape[1] and len(one_hot) == max(groups) + 1
    assert groups[own:] == (9, 10, 11, 12) and one_hot[9:] == (False,) * 4
    flags_on = [np.mean([p[f"flag{i}"] for i in range(2)]) for p in points]
    np.testing.assert_allclose(features[:, own], flags_on)
    for column, op in enumerate(ops, start=own + 1):
        share = [np.mean([p[f"op{i}"] == op for i in range(4)]) for p in points]
        np.testing.assert_allclose(features[:, column], share)


def test_totals_let_the_gp_learn_a_sum_over_slots() -> None:
    """A model size, say, is a sum over slots: the totals make it learnable from 30 trials, and so
    does the additive part on the one-hot columns alone."""
    ops = ["none", "skip", "pool", "conv1x1", "conv3x3"]
    cost = dict(zip(ops, [0.0, 0.0, 0.0, 1.0, 9.0]))
    space = OptunaSpace({f"op{i}": CategoricalDistribution(ops) for i in range(6)})
    vectors = np.random.default_rng(0).integers(len(ops), size=(230, 6))
    y = np.array([sum(cost[ops[v]] for v in row) for row in vectors])
    X = space.features(vectors)
    groups, one_hot = space.feature_groups()
    with_totals = GroupedGPPredictor(groups=groups, categorical=one_hot, additive=False, random_state=0)
    with_totals.fit(X[:30], y[:30])
    one_hot_only = GroupedGPPredictor(groups=groups[:30], categorical=one_hot[:6], additive=False, random_state=0)
    one_hot_only.fit(X[:30, :30], y[:30])
    tau = kendall_tau(y[30:], with_totals.predict(X[30:]))
    assert tau > 0.85
    # Measured: 0.93 against 0.51 on one-hot columns alone.
    assert tau > kendall_tau(y[30:], one_hot_only.predict(X[30:, :30])) + 0.1
    # Measured: 0.85 with the additive part.
    additive = GroupedGPPredictor(groups=groups[:30], categorical=one_hot[:6], random_state=0).fit(X[:30, :30], y[:30])
    assert kendall_tau(y[30:], additive.predict(X[30:, :30])) > 0.8


def _sklearn_kernel(model: GroupedGPPredictor) -> Any:
    """The fitted kernel of a model whose every column is its own group, from sklearn's kernels:
    the ARD Matérn-5/2, plus with an additive share a Matérn per column (the others' length
    scales so long that they do not count)."""
    amplitude, share, scales = np.exp(model.log_amplitude_), model.additive_share_, model.length_scales_
    kernel = ConstantKernel(amplitude * (1.0 - share)) * Matern(scales, nu=2.5)
    for column, scale in enumerate(scales if share > 0 else []):
        alone = np.full(len(scales), 1e12)
        alone[column] = scale
        kernel += ConstantKernel(amplitude * share / len(scales)) * Matern(alone, nu=2.5)
    return kernel


def _refit_without(model: GroupedGPPredictor, X: np.ndarray, y: np.ndarray, i: int) -> float:
    """Row ``i``'s latent posterior mean from the other rows, by sklearn with the model's hyperparameters."""
    kernel = _sklearn_kernel(model)
    targets = ((model.warp_.scores if model.warped_ else y) - model.y_mean_) / model.y_scale_
    others = np.arange(len(y)) != i
    gp = GaussianProcessRegressor(kernel, alpha=model.noise_ + 1e-9, optimizer=None)
    gp.fit(model.Z_[others], targets[others])
    return float(gp.predict(model.Z_[i:i + 1])[0])


@pytest.mark.parametrize("warp", [True, False])
def test_leave_one_out_ranking_is_that_of_refits_without_each_row(warp: bool) -> None:
    from optnas.predictors.grouped_gp import _LatentFit

    rng = np.random.default_rng(3)
    X = rng.random((25, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1] ** 2
    model = GroupedGPPredictor(warp=warp, additive=False, random_state=0).fit(X, y)
    assert model.warped_ is warp
    refits = np.array([_refit_without(model, X, y, i) for i in range(len(y))])
    distances = model._group_distances(model.Z_, model.Z_)
    fit = _LatentFit(model.warp_.scores if warp else y, distances, np.zeros(len(distances), dtype=bool), 0,
                     np.random.RandomState(0))
    assert fit.loo_tau(y) == pytest.approx(kendall_tau(y, refits), abs=1e-9)


def test_auto_keeps_the_warp_for_outliers_and_drops_it_where_it_ranks_worse() -> None:
    rng = np.random.default_rng(1)
    X = rng.random((40, 2))
    y = X.sum(axis=1)
    y[:3] = 1000.0  # three networks that did not learn, say
    outliers = GroupedGPPredictor(warp="auto", random_state=0).fit(X, y)
    assert outliers.warped_
    # A sum of a smooth term and a narrow valley: normal scores flatten the valley's depth.
    X = rng.random((60, 3))
    y = X[:, 0] + 4 * np.exp(-((X[:, 1] - 0.3) / 0.05) ** 2)
    plain = GroupedGPPredictor(warp="auto", random_state=0).fit(X, y)
    forced = [GroupedGPPredictor(warp=warp, random_state=0).fit(X, y) for warp in (True, False)]
    taus = [kendall_tau(y, np.array([_refit_without(model, X, y, i) for i in range(len(y))])) for model in forced]
    # auto chose the model whose leave-one-out predictions rank the rows better: here the plain one.
    assert taus[1] > taus[0] and not plain.warped_
    np.testing.assert_allclose(plain.predict(X[:5]), forced[0 if plain.warped_ else 1].predict(X[:5]))


def test_warp_must_be_true_false_or_auto() -> None:
    with pytest.raises(ValueError, match="warp must be"):
        GroupedGPPredictor(warp="sometimes").fit(np.random.default_rng(0).random((5, 2)), np.arange(5.0))


def test_the_additive_part_is_sklearns_sum_of_one_column_kernels() -> None:
    rng = np.random.default_rng(5)
    X = rng.random((50, 4))
    # A sum of one-parameter effects: the additive part explains it, and takes most of the kernel.
    y = np.sin(6 * X[:, 0]) + np.cos(5 * X[:, 1]) + X[:, 2] ** 2 + 0.5 * np.sin(7 * X[:, 3])
    model = GroupedGPPredictor(warp=False, random_state=0).fit(X, y)
    assert model.additive_share_ > 0.5
    reference = GaussianProcessRegressor(_sklearn_kernel(model), alpha=model.noise_ + 1e-9, optimizer=None,
                                         normalize_y=True).fit(model.scaler_(X), y)
    queries = rng.random((40, 4))
    mean, std = reference.predict(model.scaler_(queries), return_std=True)
    np.testing.assert_allclose(model.predict_std(queries, return_mean=True), (mean, std), atol=1e-6)
    # Beside the product kernel alone (its share 0), it predicts new rows better.
    product = GroupedGPPredictor(warp=False, additive=False, random_state=0).fit(X, y)
    assert product.additive_share_ == 0.0
    truth = np.sin(6 * queries[:, 0]) + np.cos(5 * queries[:, 1]) + queries[:, 2] ** 2 + 0.5 * np.sin(7 * queries[:, 3])
    assert kendall_tau(truth, mean) > kendall_tau(truth, product.predict(queries)) + 0.05


def test_the_additive_part_over_groups_of_one_and_of_several_columns(mixed: tuple[Any, ...]) -> None:
    """The kernel written out pair by pair, a parameter's one-hot columns forming one group."""
    space, X, y = mixed
    groups, one_hot = space.feature_groups()
    model = GroupedGPPredictor(groups=groups, categorical=one_hot, warp=False, random_state=0).fit(X[:60], y[:60])
    # y is a sum of one-parameter effects, so the additive part is used.
    assert model.additive_share_ > 0
    weight = np.where(np.asarray(one_hot)[list(groups)], 0.5, 1.0)
    differences = model.scaler_(X[60:])[:, None, :] - model.Z_[None, :, :]
    per_group = np.stack([(weight[c] * differences[..., c] ** 2).sum(axis=-1) / model.length_scales_[g] ** 2
                          for g, c in enumerate(model.group_columns_)])
    share = model.additive_share_
    cross = np.exp(model.log_amplitude_) * (
        (1 - share) * _matern(per_group.sum(axis=0)) + share * _matern(per_group).mean(axis=0))
    np.testing.assert_allclose(model.predict(X[60:]), cross @ model.alpha_ * model.y_scale_ + model.y_mean_,
                               atol=1e-9)


def test_an_interaction_the_additive_part_cannot_explain_keeps_the_product() -> None:
    rng = np.random.default_rng(6)
    X = rng.random((50, 2))
    # Only the product of the two matters: no sum of one-parameter effects explains it.
    y = np.sin(4 * X[:, 0]) * np.sin(4 * X[:, 1] - 2)
    model = GroupedGPPredictor(warp=False, random_state=0).fit(X, y)
    assert model.additive_share_ < 0.1


def test_gradient_of_the_additive_share_is_exact(mixed: tuple[Any, ...]) -> None:
    space, X, y = mixed
    groups, one_hot = space.feature_groups()
    model = GroupedGPPredictor(groups=groups, categorical=one_hot, random_state=0).fit(X[:40], y[:40])
    distances = model._group_distances(model.Z_, model.Z_)
    product = _matern(_scaled(distances, model.length_scales_))
    parts = np.mean([_matern(d / scale**2) for d, scale in zip(distances, model.length_scales_)], axis=0)
    t = (model.warp_.scores - model.y_mean_) / model.y_scale_
    for theta in ([0.3, -1.0, -3.0], [-1.0, 2.0, -6.0]):
        def value(a: np.ndarray) -> float:
            return _additive_negative_log_posterior(a, product, parts, t)[0]

        def gradient(a: np.ndarray) -> np.ndarray:
            return _additive_negative_log_posterior(a, product, parts, t)[1]

        assert scipy.optimize.check_grad(value, gradient, np.array(theta)) < 1e-4 * max(
            1.0, np.abs(gradient(np.array(theta))).max())


def test_without_warp_only_a_shared_extreme_bounds_the_predictions() -> None:
    rng = np.random.default_rng(4)
    X = rng.random((30, 1))
    slope = 3.0 * X[:, 0]
    # A steep line: far outside the rows, the posterior mean passes the targets' range.
    far = np.linspace(-3.0, 4.0, 50)[:, None]
    free = GroupedGPPredictor(warp=False, random_state=0).fit(X, slope)
    assert free.predict(far).min() < slope.min() - 0.3 * np.ptp(slope)
    # The same line with its smallest value shared by five rows (the smallest network a space
    # holds): no prediction passes it, while the other end still may.
    floored = np.maximum(slope, np.sort(slope)[4])
    model = GroupedGPPredictor(warp=False, random_state=0).fit(X, floored)
    predicted = model.predict(far)
    assert predicted.min() >= floored.min()
    assert predicted.max() > floored.max() + 0.05 * np.ptp(floored)
    normal = np.random.default_rng(0).standard_normal((20, len(far)))
    assert model.predict_draws(far, normal).min() >= floored.min()


def test_kept_moments_find_what_a_dictionary_of_row_bytes_finds() -> None:
    rng = np.random.default_rng(0)
    # Few distinct rows, so that blocks repeat rows within and across them; 0.0 and -0.0
    # are equal values but other bytes.
    rows = rng.choice([0.0, -0.0, 0.25, 1.0], size=(300, 3))
    kept, reference = _KeptMoments(3, capacity=40), {}
    for start in range(0, 300, 30):
        block = rows[start:start + 30]
        # Each row's moments name it, so that which copy is found shows.
        moments = np.column_stack([np.arange(start, start + 30), np.zeros(30)]).astype(float)
        both, missing = kept.find(block)
        expected = [reference.get(row.tobytes()) for row in block]
        np.testing.assert_array_equal(missing, [i for i, value in enumerate(expected) if value is None])
        found = np.setdiff1d(np.arange(30), missing)
        np.testing.assert_array_equal(both[found, 0], [expected[i] for i in found])
        kept.keep(block[missing], moments[missing])
        room = max(40 - len(reference), 0)
        reference.update((block[i].tobytes(), float(start + i)) for i in missing[:room])
        assert len(kept) == len(reference)
    assert len(reference) == 40
    # Keys that all collide never match another row's moments.
    colliding = _KeptMoments(3, capacity=300)
    colliding.multipliers[:] = 0
    colliding.keep(rows, np.column_stack([np.arange(300), np.zeros(300)]).astype(float))
    both, missing = colliding.find(rows)
    for i in np.setdiff1d(np.arange(300), missing):
        assert rows[i].tobytes() == rows[int(both[i, 0])].tobytes()
