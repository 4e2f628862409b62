"""Tests of the accuracy predictors on a synthetic MobileNetV3-like benchmark."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from optnas.predictors import (
    DEFAULT_POOL,
    PREDICTOR_NAMES,
    AdaptiveSwitching,
    CARTsPredictor,
    GPPredictor,
    MLPPredictor,
    Predictor,
    RBFPredictor,
    XGBPredictor,
    get_predictor,
    kendall_tau,
    rmse,
)
from optnas.predictors.datasets import make_mbv3_like

N_TRAIN, N_TEST = 150, 100

# Smaller models than the defaults keep the suite fast; they still rank well.
_POOL_PARAMS: dict[str, dict[str, Any]] = {
    "carts": {"n_trees": 50},
    "mlp": {"epochs": 150, "hidden_layer_sizes": (64, 64)},
    "xgb": {"n_estimators": 150},
}
FAST_PARAMS: dict[str, dict[str, Any]] = {
    **_POOL_PARAMS,
    "gp": {},
    "rbf": {},
    "as": {"pool_params": {name: _POOL_PARAMS[name] for name in ("carts", "xgb")}, "n_folds": 3},
}


def _fast(name: str, random_state: int | None = 0) -> Predictor:
    return get_predictor(name, random_state=random_state, **FAST_PARAMS[name])


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_mbv3_like(N_TRAIN + N_TEST, random_state=0)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, ...]) -> dict[str, Predictor]:
    X, y, _, _ = data
    return {name: _fast(name).fit(X, y) for name in PREDICTOR_NAMES}


@parametrize_with_checks(
    [
        RBFPredictor(),
        GPPredictor(),
        CARTsPredictor(n_trees=20),
        MLPPredictor(epochs=200, hidden_layer_sizes=(64, 64)),
        XGBPredictor(n_estimators=50),
        AdaptiveSwitching(pool=("rbf", "xgb"), pool_params={"xgb": {"n_estimators": 20}}),
    ]
)
def test_sklearn_compatible(estimator: Predictor, check: Any) -> None:
    """scikit-learn's own estimator checks."""
    check(estimator)


@pytest.mark.parametrize("name", PREDICTOR_NAMES)
def test_predicts_held_out_ranking(
    name: str, data: tuple[np.ndarray, ...], fitted: dict[str, Predictor]
) -> None:
    _, _, X_test, y_test = data
    prediction = fitted[name].predict(X_test)
    assert prediction.shape == (N_TEST,)
    assert prediction.dtype == np.float64
    assert kendall_tau(y_test, prediction) > 0.5


@pytest.mark.parametrize("name", PREDICTOR_NAMES)
def test_same_random_state_same_predictions(
    name: str, data: tuple[np.ndarray, ...], fitted: dict[str, Predictor]
) -> None:
    X, y, X_test, _ = data
    again = _fast(name).fit(X, y)
    np.testing.assert_array_equal(again.predict(X_test), fitted[name].predict(X_test))


@pytest.mark.parametrize("name", ["carts", "mlp", "xgb"])
def test_other_random_state_other_predictions(
    name: str, data: tuple[np.ndarray, ...], fitted: dict[str, Predictor]
) -> None:
    X, y, X_test, _ = data
    other = _fast(name, random_state=1).fit(X, y)
    assert not np.array_equal(other.predict(X_test), fitted[name].predict(X_test))


@pytest.mark.parametrize("name", PREDICTOR_NAMES)
def test_clone_and_pickle(
    name: str, data: tuple[np.ndarray, ...], fitted: dict[str, Predictor]
) -> None:
    _, _, X_test, _ = data
    model = fitted[name]
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(X_test)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X_test), model.predict(X_test))


@pytest.mark.parametrize("name", PREDICTOR_NAMES)
def test_accepts_lists_of_ints(name: str) -> None:
    X = [[0, 1, 2], [1, 0, 2], [2, 2, 0], [0, 0, 1], [1, 2, 1]]
    model = _fast(name).fit(X, [1, 2, 3, 4, 5])
    assert model.n_features_in_ == 3
    assert model.predict([[0, 1, 2]]).shape == (1,)


@pytest.mark.parametrize("name", PREDICTOR_NAMES)
def test_fits_constant_genes_and_constant_target(name: str) -> None:
    X = np.array([[1, 0], [1, 1], [1, 2], [1, 0], [1, 1], [1, 2]])
    model = _fast(name).fit(X, np.full(6, 25.0))
    np.testing.assert_allclose(model.predict([[1, 1], [0, 2]]), 25.0, atol=1e-3)


@pytest.mark.parametrize("name", PREDICTOR_NAMES)
def test_bad_inputs_raise_clear_errors(name: str, fitted: dict[str, Predictor]) -> None:
    model = _fast(name)
    with pytest.raises(NotFittedError):
        model.predict([[0] * 46])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit([[0, 1], [1, 0], [1, 1]], [1.0, 2.0])
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        model.fit([[0, 1]], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        model.fit([[0, np.nan], [1, 0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="Expected 2D array"):
        fitted[name].predict(np.zeros(46))
    with pytest.raises(ValueError, match="features"):
        fitted[name].predict(np.zeros((2, 45)))


def test_rbf_interpolates_and_merges_duplicates(data: tuple[np.ndarray, ...]) -> None:
    X, y, _, _ = data
    model = RBFPredictor().fit(X, y)
    np.testing.assert_allclose(model.predict(X), y, atol=1e-6)
    # Duplicate encodings with different targets get their mean, without a singular system.
    model = RBFPredictor().fit(np.vstack([X, X[:10]]), np.concatenate([y, y[:10] + 1.0]))
    np.testing.assert_allclose(model.predict(X[:10]), y[:10] + 0.5, atol=1e-6)


def test_rbf_fits_fewer_samples_than_genes(data: tuple[np.ndarray, ...]) -> None:
    X, y, X_test, y_test = data
    model = RBFPredictor().fit(X[:20], y[:20])
    np.testing.assert_allclose(model.predict(X[:20]), y[:20], atol=1e-6)
    assert kendall_tau(y_test, model.predict(X_test)) > 0.3


def test_rbf_smoothing_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="smoothing"):
        RBFPredictor(smoothing=-1.0).fit([[0], [1]], [0.0, 1.0])


def test_gp_is_sklearns_posterior_mean(data: tuple[np.ndarray, ...]) -> None:
    X, y, X_test, y_test = data
    model = GPPredictor(max_samples=60, random_state=0).fit(X, y)
    # Hyperparameters from 60 samples, posterior on all 150.
    assert model.alpha_.shape == (N_TRAIN,)
    assert kendall_tau(y_test, model.predict(X_test)) > 0.5
    reference = GaussianProcessRegressor(model.kernel_, optimizer=None, normalize_y=True)
    reference.fit(model.scaler_(X), y)
    np.testing.assert_allclose(
        model.predict(X_test), reference.predict(model.scaler_(X_test)), atol=1e-6
    )
    with pytest.raises(ValueError, match="max_samples"):
        GPPredictor(max_samples=1).fit(X, y)


def test_mlp_leaves_torch_global_state_alone(data: tuple[np.ndarray, ...]) -> None:
    X, y, _, _ = data
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MLPPredictor(epochs=5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_mlp_validation_split(data: tuple[np.ndarray, ...]) -> None:
    X, y, X_test, y_test = data
    model = MLPPredictor(
        epochs=150, hidden_layer_sizes=(64, 64), validation_fraction=0.2, random_state=0
    ).fit(X, y)
    assert kendall_tau(y_test, model.predict(X_test)) > 0.5
    with pytest.raises(ValueError, match="validation_fraction"):
        MLPPredictor(validation_fraction=1.0).fit(X, y)


def test_adaptive_switching_picks_a_pool_member(fitted: dict[str, Predictor]) -> None:
    model = fitted["as"]
    assert model.winner_ in DEFAULT_POOL
    assert set(model.scores_) == set(DEFAULT_POOL)
    assert all(len(taus) == 3 for taus in model.fold_scores_.values())
    merit = {name: t.mean() - t.std() for name, t in model.fold_scores_.items()}
    assert model.winner_ == max(merit, key=merit.get)
    assert model.scores_[model.winner_] == pytest.approx(model.fold_scores_[model.winner_].mean())
    assert isinstance(model.estimator_, type(get_predictor(model.winner_)))


def test_adaptive_switching_follows_the_better_candidate(data: tuple[np.ndarray, ...]) -> None:
    X, y, X_test, _ = data
    # A single-gene tree ensemble cannot rank 46-gene architectures; the RBF can.
    model = AdaptiveSwitching(
        pool=("carts", "rbf"), pool_params={"carts": {"n_trees": 5, "max_features": 1}}
    ).fit(X, y)
    assert model.winner_ == "rbf"
    np.testing.assert_array_equal(
        model.predict(X_test), RBFPredictor().fit(X, y).predict(X_test)
    )


def test_adaptive_switching_on_too_few_samples_takes_the_first() -> None:
    model = AdaptiveSwitching(pool=("xgb", "rbf"), random_state=0)
    model.fit([[0, 1], [1, 0], [2, 2]], [1.0, 2.0, 3.0])
    assert model.winner_ == "xgb"
    assert all(np.isnan(score) for score in model.scores_.values())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pool": ("rbf", "as")}, "pool must list"),
        ({"pool": ()}, "pool must list"),
        ({"pool": ("rbf", "rbf")}, "pool must list"),
        ({"pool": ("rbf",), "pool_params": {"gp": {}}}, "not in the pool"),
        ({"n_folds": 1}, "n_folds"),
    ],
)
def test_adaptive_switching_rejects_bad_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveSwitching(**params).fit([[0], [1], [2], [3]], [0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("as", AdaptiveSwitching),
        ("carts", CARTsPredictor),
        ("cart", CARTsPredictor),
        ("rbf", RBFPredictor),
        ("mlp", MLPPredictor),
        ("gp", GPPredictor),
        ("xgb", XGBPredictor),
        ("xgboost", XGBPredictor),
    ],
)
def test_get_predictor(name: str, cls: type[Predictor]) -> None:
    model = get_predictor(name, random_state=7)
    assert type(model) is cls
    assert model.get_params().get("random_state", 7) == 7


def test_get_predictor_passes_arguments_and_rejects_unknown_names() -> None:
    assert get_predictor("carts", n_trees=12).n_trees == 12
    with pytest.raises(ValueError, match="unknown predictor 'svm'; choose one of as, carts"):
        get_predictor("svm")


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0
    assert kendall_tau([1], [2]) == 0.0
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])


def test_rmse() -> None:
    assert rmse([0.0, 0.0], [3.0, 4.0]) == pytest.approx(np.sqrt(12.5))
    with pytest.raises(ValueError, match="same length"):
        rmse([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        rmse([], [])


def test_synthetic_benchmark_is_canonical() -> None:
    X, y = make_mbv3_like(200, n_resolutions=25, random_state=0)
    assert X.shape == (200, 46) and y.shape == (200,)
    assert X[:, :45].max() == 2 and X[:, 45].max() <= 24
    depth = X[:, :5] + 2
    slot_active = np.arange(4)[None, None, :] < depth[:, :, None]
    assert np.all(X[:, 5:25].reshape(-1, 5, 4)[~slot_active] == 0)
    np.testing.assert_array_equal(X, make_mbv3_like(200, n_resolutions=25, random_state=0)[0])
