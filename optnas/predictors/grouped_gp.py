"""Gaussian process regression with one length scale per parameter, and its predictive spread.

The plain form of the surrogate sampler learns from a user's own Optuna parameters: a few
numeric ones beside categories seen one-hot. An isotropic kernel lets a parameter that does
not matter blur every distance; one length scale per *column* gives a five-way category five
scales to learn from twenty trials. One scale per *parameter* (its group of columns) is the
middle: a category that differs counts as one unit of distance, however many choices it has,
and an irrelevant parameter's scale grows until it no longer counts.

A product of per-parameter kernels also keeps what is learnt about one parameter local to the
others' settings: a good value found at one end of the front is not believed at the other.
Many objectives are mostly a sum of their parameters' own effects (a network's size, a
penalty, the distance to a front in WFG and ZDT problems), which the kernel's first-order
additive part, a Matérn per parameter, carries across the whole space.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats
from sklearn.utils import check_random_state

from optnas.predictors.base import Predictor, _in_chunks, _squared_distances, _standardise, _UnitCube
from optnas.predictors.metrics import kendall_tau

_SQRT5 = math.sqrt(5.0)
# Bounds of the log hyperparameters: amplitude, length scales (in unit-cube distances), noise;
# and of the additive part's share, in log odds.
_LOG_AMPLITUDE = (math.log(1e-2), math.log(1e2))
_LOG_SCALE = (math.log(5e-2), math.log(1e2))
_LOG_NOISE = (math.log(1e-6), math.log(1.0))
_LOGIT_SHARE = (-8.0, 8.0)
# Nats a continuous parameter's length scale is charged per unit of l² − 1 beyond l = 1: 10 to
# switch it off (l = 10), under 1 up to l = 3 (see _scale_prior).
_LONG_SCALE_CHARGE = 0.1
# Rows whose latent moments a fitted model keeps (see GroupedGPPredictor._latent_moments).
_MOMENTS_KEPT = 1 << 16


class GroupedGPPredictor(Predictor):
    """The posterior of a Gaussian process with kernel
    ``a · [(1 − s) · Matérn-5/2(r) + s · mean_g Matérn-5/2(r_g)]`` plus white noise,
    ``r_g² = |x_g − x'_g|² / l_g²`` over groups ``g`` of feature columns and ``r² = Σ_g r_g²``.

    Features are scaled to [0, 1] column by column and the target standardised; one-hot
    columns of a category are halved in squared distance, so that two different choices are
    one unit apart. The hyperparameters maximise the marginal likelihood under weak priors
    (length scales drawn towards 1 and the noise towards small values, which keeps twenty
    samples from being explained as noise; a continuous parameter's scale is charged more to
    grow long), by L-BFGS-B with exact gradients from
    ``n_restarts + 1`` starts. With ``additive`` the length scales are those of the product
    alone (``s = 0``); then the amplitude, the share ``s`` and the noise are fitted again, and
    the share kept only where it raises the marginal posterior. (Fitting all at once costs a
    Matérn per group in every step of the optimiser: ten times the time, measured in
    ``benchmarks/README.md``.)

    Args:
        groups: the group of every feature column (e.g. the parameter it encodes); None:
            every column its own group.
        categorical: per group, whether its columns are a one-hot category (None: none are).
        continuous: per group, whether it is a continuous parameter (None: none is). Its
            length scale pays ``0.1 · (l² − 1)`` nats beyond 1, 10 to switch it off: twenty to
            a hundred distinct values cannot show a small effect beside a large rugged one
            (WFG2's distance parameters beside its position's ridges), and a parameter held
            irrelevant is never varied on purpose, so the data never correct it. A parameter
            of a few values, each tried several times, is left to the data.
        n_restarts: extra optimiser starts from random hyperparameters.
        warp: model the targets' normal scores (their ranks through the normal quantile
            function) instead of their values, mapped back piecewise linearly: a few
            outliers (a network that does not learn scores 10 %) then no longer flatten
            every other difference, and the posterior stays normal. Scores also flatten a
            deep narrow valley to one rank step: with ``"auto"`` both models are fitted and
            the one whose leave-one-out posterior means rank the training targets better
            (Kendall's tau, the warp on a tie) is kept, in ``warped_``.
        additive: also fit the share of the first-order additive part (False: ``s = 0``),
            in ``additive_share_``.
        random_state: seeds the restarts.
    """

    def __init__(
        self,
        groups: tuple[int, ...] | None = None,
        categorical: tuple[bool, ...] | None = None,
        continuous: tuple[bool, ...] | None = None,
        n_restarts: int = 2,
        warp: bool | str = True,
        additive: bool = True,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.groups = groups
        self.categorical = categorical
        self.continuous = continuous
        self.n_restarts = n_restarts
        self.warp = warp
        self.additive = additive
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        groups = np.arange(X.shape[1]) if self.groups is None else np.asarray(self.groups, dtype=np.int64)
        if groups.shape != (X.shape[1],):
            raise ValueError(f"groups names {groups.size} columns; X has {X.shape[1]}")
        self.group_ids_, self.column_group_ = np.unique(groups, return_inverse=True)
        self.group_columns_ = [np.flatnonzero(self.column_group_ == g) for g in range(len(self.group_ids_))]
        categorical, continuous = (np.zeros(len(self.group_ids_), dtype=bool) if flags is None
                                   else np.asarray(flags, dtype=bool)[self.group_ids_]
                                   for flags in (self.categorical, self.continuous))
        self.column_weight_ = np.where(categorical[self.column_group_], 0.5, 1.0)
        self.scaler_ = _UnitCube(X)
        self.Z_ = self.scaler_(X)
        if self.warp not in (True, False, "auto"):
            raise ValueError(f"warp must be True, False or 'auto', got {self.warp!r}")
        distances = self._group_distances(self.Z_, self.Z_)
        rng = check_random_state(self.random_state)
        warp = _NormalScores(y)
        choices = {True: [warp.scores], False: [y], "auto": [warp.scores, y]}[self.warp]
        fits = [_LatentFit(targets, distances, continuous, self.n_restarts, rng, self.additive) for targets in choices]
        # With "auto" the warp stays only where the trials' own leave-one-out predictions rank
        # them at least as well with it: ranks do not depend on the scale they are modelled on.
        best = 0 if len(fits) == 1 else max(range(len(fits)), key=lambda i: (fits[i].loo_tau(y), -i))
        self.warped_ = self.warp is True or (self.warp == "auto" and best == 0)
        self.warp_ = warp
        fit = fits[best]
        self.y_mean_, self.y_scale_ = fit.mean, fit.scale
        self.log_amplitude_, self.length_scales_, self.noise_ = fit.log_amplitude, fit.length_scales, fit.noise
        self.additive_share_ = fit.share
        self.cholesky_, self.alpha_ = fit.cholesky, fit.alpha
        # Every column divided by its group's length scale: one distance pass then gives the
        # kernel's scaled distance, where the fit needs each group's distances apart.
        self.column_stretch_ = np.sqrt(self.column_weight_) / self.length_scales_[self.column_group_]
        self.stretched_ = self.Z_ * self.column_stretch_
        self._moments = _KeptMoments(X.shape[1], _MOMENTS_KEPT)

    def _group_distances(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Squared distances per group, shape (n_groups, len(A), len(B))."""
        out = np.empty((len(self.group_ids_), len(A), len(B)))
        weight = np.sqrt(self.column_weight_)
        A, B = A * weight, B * weight
        for g, columns in enumerate(self.group_columns_):
            out[g] = _squared_distances(A[:, columns], B[:, columns])
        return out

    def _cross(self, X: np.ndarray) -> np.ndarray:
        query = self.scaler_(X) * self.column_stretch_
        kernel = _matern(_squared_distances(query, self.stretched_))
        if self.additive_share_ > 0:
            kernel *= 1.0 - self.additive_share_
            weight = self.additive_share_ / len(self.group_ids_)
            for columns in self.group_columns_:
                kernel += weight * _matern(_squared_distances(query[:, columns], self.stretched_[:, columns]))
        return np.exp(self.log_amplitude_) * kernel

    def _latent_mean(self, X: np.ndarray) -> np.ndarray:
        latent = _in_chunks(lambda block: self._cross(block) @ self.alpha_, X, len(self.Z_))
        return latent * self.y_scale_ + self.y_mean_

    def _latent_moments(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The latent posterior mean and standard deviation, from one kernel pass per row.

        A fitted model keeps the moments of the first ``_MOMENTS_KEPT`` rows it meets: a
        search scores its candidates at an optimistic quantile and then draws the same rows
        (both ``predict_draws``), which would otherwise repeat the kernel pass over all of them.
        """

        def moments(block: np.ndarray) -> np.ndarray:
            cross = self._cross(block)
            solved = scipy.linalg.solve_triangular(self.cholesky_[0], cross.T, lower=True)
            variance = np.exp(self.log_amplitude_) - (solved**2).sum(axis=0)
            return np.column_stack([cross @ self.alpha_, np.sqrt(np.maximum(variance, 0.0))])

        both, missing = self._moments.find(X)
        if len(missing):
            both[missing] = _in_chunks(moments, X[missing], len(self.Z_))
            self._moments.keep(X[missing], both[missing])
        return both[:, 0] * self.y_scale_ + self.y_mean_, both[:, 1] * self.y_scale_

    def _predict(self, X: np.ndarray) -> np.ndarray:
        mean = self._latent_mean(X)
        return self.warp_.values(mean) if self.warped_ else self.warp_.bounded(mean)

    def predict_std(self, X: np.ndarray, return_mean: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Return the posterior standard deviation of the noise-free target at each row.

        With ``warp``, half the width of the one-deviation interval mapped back to values.

        Args:
            X: gene encodings, as for ``predict``.
            return_mean: return ``(predict(X), std)``, both from one kernel evaluation.
        """
        mean, std = self._on_validated(X, self._latent_moments)
        if self.warped_:
            mean, std = self.warp_.values(mean), (self.warp_.values(mean + std) - self.warp_.values(mean - std)) / 2
        return (mean, std) if return_mean else std

    def predict_draws(self, X: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Return draws of the posterior predictive distribution of the noise-free target.

        Each draw is the latent mean plus ``normal`` latent standard deviations, mapped back
        to values (through the warp with ``warp``), so a draw follows the posterior's own shape.

        Args:
            X: gene encodings, as for ``predict``.
            normal: array (s, len(X)) of standard normal numbers, one draw per row.
        """
        mean, std = self._on_validated(X, self._latent_moments)
        latent = mean + np.asarray(normal, dtype=float) * std
        return self.warp_.values(latent) if self.warped_ else self.warp_.bounded(latent)


class _KeptMoments:
    """The latent moments of rows met before, found again by an exact match of their bytes.

    A row's 64-bit words are mixed into one integer (each folded, multiplied by a fixed odd
    number, folded again, and all summed, wrapping), so finding a call's rows is one sorted
    search rather than a hash per row in Python; a match is confirmed on the row's words.

    Args:
        width: the columns of a row.
        capacity: the most rows kept (later ones are computed, not kept).
    """

    def __init__(self, width: int, capacity: int) -> None:
        self.multipliers = np.random.default_rng(0).integers(1, 2**62, size=width, dtype=np.uint64) * 2 + 1
        self.capacity = capacity
        self.words = np.empty((0, width), dtype=np.uint64)
        self.moments = np.empty((0, 2))
        self.sorted_keys = np.empty(0, dtype=np.uint64)
        self.sorted_slots = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.moments)

    def _words(self, X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(X, dtype=np.float64).view(np.uint64)

    def _keys(self, words: np.ndarray) -> np.ndarray:
        # A float of few significant bits (0.25, 1.0) has only zeros low down, which a product
        # keeps low down: the high half is folded onto the low one first, then mixed back up.
        mixed = words ^ (words >> np.uint64(32))
        mixed *= self.multipliers
        mixed ^= mixed >> np.uint64(29)
        return mixed.sum(axis=1, dtype=np.uint64)

    def find(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return an array (len(X), 2) holding the kept rows' moments, and the other rows' indices."""
        both = np.empty((len(X), 2))
        if not len(self.sorted_keys):
            return both, np.arange(len(X))
        words = self._words(X)
        keys = self._keys(words)
        at = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        slots = self.sorted_slots[at]
        found = (self.sorted_keys[at] == keys) & (self.words[slots] == words).all(axis=1)
        both[found] = self.moments[slots[found]]
        return both, np.flatnonzero(~found)

    def keep(self, X: np.ndarray, moments: np.ndarray) -> None:
        """Keep the moments of the first rows of ``X`` (rows ``find`` did not find), up to the capacity."""
        room = max(self.capacity - len(self), 0)
        words, moments = self._words(X[:room]), moments[:room]
        if not len(words):
            return
        # A row met twice keeps its last moments, as a dictionary updated row by row would.
        last = len(words) - 1 - np.unique(words[::-1], axis=0, return_index=True)[1]
        words, moments = words[last], moments[last]
        keys = self._keys(words)
        # np.insert keeps the given order among values inserted at one place: sorted first.
        order = np.argsort(keys, kind="stable")
        keys, slots = keys[order], len(self) + order
        self.words = np.concatenate([self.words, words])
        self.moments = np.concatenate([self.moments, moments])
        at = np.searchsorted(self.sorted_keys, keys)
        self.sorted_keys = np.insert(self.sorted_keys, at, keys)
        self.sorted_slots = np.insert(self.sorted_slots, at, slots)


class _LatentFit:
    """The kernel hyperparameters maximising the marginal posterior of standardised targets, and
    the posterior's Cholesky factor and weights.

    Args:
        targets: the targets (values or their normal scores).
        distances: the training rows' squared distances per group.
        continuous: per group, whether its length scale is charged as a continuous parameter's.
        n_restarts: extra optimiser starts from random hyperparameters.
        rng: draws the restarts.
        additive: then fit the additive part's share (see :class:`GroupedGPPredictor`).
    """

    def __init__(self, targets: np.ndarray, distances: np.ndarray, continuous: np.ndarray, n_restarts: int,
                 rng: np.random.RandomState, additive: bool = False) -> None:
        self.mean, self.scale = _standardise(targets)
        self.t = t = (targets - self.mean) / self.scale
        n_groups = len(distances)
        bounds = [_LOG_AMPLITUDE] + [_LOG_SCALE] * n_groups + [_LOG_NOISE]
        starts = [np.concatenate([[0.0], np.zeros(n_groups), [math.log(1e-2)]])]
        starts += [np.array([rng.uniform(low, high) for low, high in bounds]) for _ in range(n_restarts)]
        best = None
        for start in starts:
            result = scipy.optimize.minimize(
                _negative_log_posterior, start, args=(distances, t, continuous), jac=True, method="L-BFGS-B",
                bounds=bounds, options={"maxiter": 200},
            )
            if best is None or result.fun < best.fun:
                best = result
        self.log_amplitude, log_noise = float(best.x[0]), float(best.x[-1])
        self.length_scales = np.exp(best.x[1:-1])
        self.share = 0.0
        kernel = _matern(_scaled(distances, self.length_scales))
        if additive:
            parts = np.mean([_matern(d / scale**2) for d, scale in zip(distances, self.length_scales)], axis=0)
            # The product fit's posterior includes the length scales' prior, fixed from here on.
            fixed = _scale_prior(best.x[1:-1], continuous)[0]
            refit = min((scipy.optimize.minimize(
                _additive_negative_log_posterior, np.array([self.log_amplitude, logit, log_noise]),
                args=(kernel, parts, t), jac=True, method="L-BFGS-B",
                bounds=[_LOG_AMPLITUDE, _LOGIT_SHARE, _LOG_NOISE], options={"maxiter": 200},
            ) for logit in (-3.0, 0.0, 3.0)), key=lambda result: result.fun)
            if refit.fun + fixed < best.fun:
                self.log_amplitude, log_noise = float(refit.x[0]), float(refit.x[-1])
                self.share = _sigmoid(refit.x[1])
                kernel = (1.0 - self.share) * kernel + self.share * parts
        self.noise = math.exp(log_noise)
        gram = np.exp(self.log_amplitude) * kernel
        gram[np.diag_indices_from(gram)] += self.noise + 1e-9
        self.cholesky = scipy.linalg.cho_factor(gram, lower=True)
        self.alpha = scipy.linalg.cho_solve(self.cholesky, t)

    def loo_tau(self, y: np.ndarray) -> float:
        """Kendall's tau between ``y`` and each training row's leave-one-out posterior mean
        (closed form: ``t_i - alpha_i / (K^-1)_ii``, in the standardised latent scale)."""
        inverse_diagonal = np.diag(scipy.linalg.cho_solve(self.cholesky, np.eye(len(self.alpha))))
        return kendall_tau(y, self.t - self.alpha / inverse_diagonal)


class _NormalScores:
    """The normal scores of training targets, and the piecewise-linear map back to values.

    Ties share their mean rank. Beyond the training targets the map continues with the
    slope of the whole range, up to a tenth of the range past either end, except past an
    extreme that two or more targets share: such a value is taken as the quantity's bound (the
    smallest network a space holds, the accuracy of chance), which no prediction passes.

    Args:
        y: the training targets.
    """

    def __init__(self, y: np.ndarray) -> None:
        ranks = scipy.stats.rankdata(y)
        self.scores = scipy.stats.norm.ppf((ranks - 0.5) / len(y))
        self.knots, first = np.unique(self.scores, return_index=True)
        self.levels = y[first]
        low, high = float(y.min()), float(y.max())
        margin = (high - low) / 10
        # An extreme two or more targets share is a bound of the quantity.
        self.floor = low if (y == low).sum() >= 2 else -np.inf
        self.ceiling = high if (y == high).sum() >= 2 else np.inf
        self.low = max(self.floor, low - margin)
        self.high = min(self.ceiling, high + margin)
        score_span = float(self.knots[-1] - self.knots[0])
        self.slope = (high - low) / score_span if score_span > 0 else 0.0

    def bounded(self, values: np.ndarray) -> np.ndarray:
        """``values`` within the quantity's bounds, the extremes that targets share (for a model of
        the values themselves, which may extrapolate past the others)."""
        return np.clip(values, self.floor, self.ceiling)

    def values(self, scores: np.ndarray) -> np.ndarray:
        mapped = np.interp(scores, self.knots, self.levels)
        # Past either end (few scores, in a search's thousands of draws), the linear continuation.
        below, above = scores < self.knots[0], scores > self.knots[-1]
        mapped[below] = self.levels[0] + (scores[below] - self.knots[0]) * self.slope
        mapped[above] = self.levels[-1] + (scores[above] - self.knots[-1]) * self.slope
        return np.clip(mapped, self.low, self.high, out=mapped)


def _scaled(distances: np.ndarray, length_scales: np.ndarray) -> np.ndarray:
    """Σ_g distances[g] / l_g², as one product of the groups' flattened distances."""
    return (length_scales**-2.0 @ distances.reshape(len(length_scales), -1)).reshape(distances.shape[1:])


def _matern(r2: np.ndarray) -> np.ndarray:
    # (1 + s + s²/3)·exp(−s) with s = √5·r, in place: three arrays instead of seven.
    s = np.multiply(r2, 5.0)
    np.sqrt(s, out=s)
    kernel = np.negative(s)
    np.exp(kernel, out=kernel)
    s += 1.0
    s += np.multiply(r2, 5.0 / 3.0)
    kernel *= s
    return kernel


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit))


def _scale_prior(log_scales: np.ndarray, continuous: np.ndarray) -> tuple[float, np.ndarray]:
    """The negative log prior of the length scales, log l ~ N(0, 1.5²) and beyond l = 1 a
    continuous parameter's charge, and its gradient."""
    squared = np.exp(2.0 * log_scales)
    charged = continuous & (log_scales > 0.0)
    value = 0.5 * float((log_scales**2).sum()) / 1.5**2 + _LONG_SCALE_CHARGE * float((squared[charged] - 1.0).sum())
    # d(l² − 1)/d(log l) = 2 l².
    return value, log_scales / 1.5**2 + np.where(charged, 2.0 * _LONG_SCALE_CHARGE * squared, 0.0)


def _gaussian_terms(kernel: np.ndarray, noise: float, t: np.ndarray) -> tuple[float, np.ndarray] | None:
    """The negative log marginal likelihood of ``t`` under ``kernel`` plus white ``noise``, and
    ``K⁻¹ − ααᵀ`` (``α = K⁻¹t``), whose products with ``dK/dθ`` give the gradient; None when
    ``K`` is not positive definite.

    The noise's prior, exponential with mean 0.01, is added: every fit has it.
    """
    gram = kernel.copy()
    gram.flat[:: len(t) + 1] += noise + 1e-9
    # LAPACK directly: the inverse from the Cholesky factor costs a sixth of solving for the
    # identity, and these small matrices need no finiteness checks.
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=True)
    if info != 0:
        return None
    lower, info = scipy.linalg.lapack.dpotri(factor, lower=True)
    # dpotri fills the lower triangle; dpotrf left the upper one zero, so adding the transpose
    # doubles only the diagonal (halved back exactly). Column-major, as LAPACK's: the products
    # below then sum in the order they always have.
    inverse = np.add(lower, lower.T, order="F")
    inverse.flat[:: len(t) + 1] *= 0.5
    alpha = inverse @ t
    value = 0.5 * t @ alpha + np.log(np.diag(factor)).sum() + 0.5 * len(t) * math.log(2 * math.pi)
    return float(value) + noise / 1e-2, inverse - np.outer(alpha, alpha)


def _negative_log_posterior(theta: np.ndarray, distances: np.ndarray, t: np.ndarray,
                            continuous: np.ndarray) -> tuple[float, np.ndarray]:
    """The negative log marginal likelihood plus log priors of the product kernel, and its gradient
    in ``theta`` (log amplitude, log length scales, log noise); ``continuous``: the groups whose
    length scales are charged as continuous parameters'."""
    log_amplitude, log_scales, log_noise = theta[0], theta[1:-1], theta[-1]
    amplitude, noise, scales = math.exp(log_amplitude), math.exp(log_noise), np.exp(log_scales)
    r2 = _scaled(distances, scales)
    r = np.sqrt(r2)
    decay = np.exp(-_SQRT5 * r)
    kernel = amplitude * (1.0 + _SQRT5 * r + 5.0 / 3.0 * r2) * decay
    terms = _gaussian_terms(kernel, noise, t)
    if terms is None:
        return 1e10, np.zeros_like(theta)
    value, inner = terms
    # dk/d(r²) of the Matérn-5/2 kernel.
    slope = -amplitude * 5.0 / 6.0 * (1.0 + _SQRT5 * r) * decay
    gradient = np.empty_like(theta)
    gradient[0] = 0.5 * (inner * kernel).sum()
    # d(r²)/d(log l_g) = -2 · distances[g] / l_g².
    gradient[1:-1] = -(distances.reshape(len(scales), -1) @ (inner * slope).ravel()) / scales**2
    gradient[-1] = 0.5 * np.trace(inner) * noise + noise / 1e-2
    prior, prior_gradient = _scale_prior(log_scales, continuous)
    gradient[1:-1] += prior_gradient
    return value + prior, gradient


def _additive_negative_log_posterior(theta: np.ndarray, product: np.ndarray, parts: np.ndarray,
                                  t: np.ndarray) -> tuple[float, np.ndarray]:
    """The negative log marginal likelihood plus the noise's prior of the kernel
    ``a · [(1 − s) · product + s · parts]`` with fixed length scales, and its gradient in ``theta``
    (log amplitude, log odds of the share ``s``, log noise)."""
    amplitude, share, noise = math.exp(theta[0]), _sigmoid(theta[1]), math.exp(theta[2])
    kernel = amplitude * ((1.0 - share) * product + share * parts)
    terms = _gaussian_terms(kernel, noise, t)
    if terms is None:
        return 1e10, np.zeros_like(theta)
    value, inner = terms
    return value, np.array([
        0.5 * (inner * kernel).sum(),
        0.5 * amplitude * share * (1.0 - share) * (inner * (parts - product)).sum(),
        0.5 * np.trace(inner) * noise + noise / 1e-2,
    ])
