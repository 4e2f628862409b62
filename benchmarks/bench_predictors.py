"""Time the accuracy predictors and measure how well they rank held-out architectures.

The data are synthetic OFA MobileNetV3 encodings (5 depth, 20 kernel-size and 20
expand-ratio genes of 3 levels, 1 resolution gene of 25 levels) with a smooth nonlinear
top-1 error (see ``optnas.predictors.datasets.make_mbv3_like``). Prints:

* fit time on 100 / 500 / 2,000 architectures and the time to predict 100,000;
* Kendall's τ on 1,000 unseen architectures against the training-set size (25 to 200),
  averaged over seeds.

With ``--data nasbench201`` the ranking is measured on NAS-Bench-201 cells instead (cifar10
table, the features the sampler uses), where the accuracies are real.

Usage: ``python benchmarks/bench_predictors.py [--quick] [--data nasbench201] [--predictors rbf gp ...]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from optnas.predictors import PREDICTOR_NAMES, get_predictor, kendall_tau
from optnas.predictors.datasets import make_mbv3_like

N_RESOLUTIONS = 25  # range(128, 225, 4), as in OFA
N_HELD_OUT = 1000
_T = TypeVar("_T")


def _timed(function: Callable[..., _T], *args: Any) -> tuple[_T, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def bench_speed(names: Sequence[str], sizes: Sequence[int], n_predict: int) -> None:
    """Print fit and predict seconds for every predictor and training size.

    Args:
        names: the predictors.
        sizes: the training-set sizes.
        n_predict: the rows to predict.
    """
    X, y = make_mbv3_like(max(sizes), n_resolutions=N_RESOLUTIONS, random_state=0)
    X_query, _ = make_mbv3_like(n_predict, n_resolutions=N_RESOLUTIONS, random_state=1)
    print(f"fit / predict {n_predict:,} rows, seconds")
    print(f"{'predictor':<10}" + "".join(f"{f'n={n}':>22}" for n in sizes))
    for name in names:
        cells = []
        for n in sizes:
            model, fit_time = _timed(get_predictor(name, random_state=0).fit, X[:n], y[:n])
            _, predict_time = _timed(model.predict, X_query)
            winner = f" ({model.winner_})" if name == "as" else ""
            cells.append(f"{fit_time:7.2f} / {predict_time:5.2f}{winner}")
        print(f"{name:<10}" + "".join(f"{cell:>22}" for cell in cells), flush=True)


def _nasbench201(n_samples: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct random NAS-Bench-201 cells: the sampler's features and the cifar10 top-1 %."""
    from optnas.spaces.nasbench201 import NASBench201Space, lookup

    space = NASBench201Space()
    rng = np.random.default_rng(random_state)
    codes = rng.choice(5 ** 6, size=n_samples, replace=False)
    vectors = np.stack([(codes // 5 ** edge) % 5 for edge in range(6)], axis=1)
    top1 = np.array([lookup(space.from_vector(v), "cifar10", random_state)["top1"] for v in vectors])
    return space.features(vectors), top1


def bench_ranking(names: Sequence[str], sizes: Sequence[int], n_seeds: int, data: str = "mbv3-like") -> None:
    """Print the mean (± std over seeds) Kendall τ on held-out architectures.

    Args:
        names: the predictors.
        sizes: the training-set sizes.
        n_seeds: the independent draws of training and held-out sets.
        data: ``mbv3-like`` (synthetic) or ``nasbench201`` (table accuracies).
    """
    datasets = [
        _nasbench201(max(sizes) + N_HELD_OUT, seed) if data == "nasbench201"
        else make_mbv3_like(max(sizes) + N_HELD_OUT, n_resolutions=N_RESOLUTIONS, random_state=seed)
        for seed in range(n_seeds)
    ]
    print(f"\nKendall τ on {N_HELD_OUT:,} held-out {data} architectures, mean ± std over {n_seeds} seeds")
    print(f"{'predictor':<10}" + "".join(f"{f'n={n}':>16}" for n in sizes))
    for name in names:
        cells = []
        for n in sizes:
            taus = []
            for seed, (X, y) in enumerate(datasets):
                model = get_predictor(name, random_state=seed).fit(X[:n], y[:n])
                taus.append(kendall_tau(y[-N_HELD_OUT:], model.predict(X[-N_HELD_OUT:])))
            cells.append(f"{np.mean(taus):.3f} ± {np.std(taus):.3f}")
        print(f"{name:<10}" + "".join(f"{cell:>16}" for cell in cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes, rows and seeds (about a minute)"
    )
    parser.add_argument(
        "--predictors", nargs="+", choices=PREDICTOR_NAMES, default=list(PREDICTOR_NAMES)
    )
    parser.add_argument("--data", choices=("mbv3-like", "nasbench201"), default="mbv3-like",
                        help="ranking data; nasbench201 measures ranking only")
    args = parser.parse_args()
    if args.data == "nasbench201":
        bench_ranking(args.predictors, sizes=(25, 50, 100, 200), n_seeds=2 if args.quick else 5, data=args.data)
    elif args.quick:
        bench_speed(args.predictors, sizes=(100, 500), n_predict=20_000)
        bench_ranking(args.predictors, sizes=(25, 50, 100, 200), n_seeds=2)
    else:
        bench_speed(args.predictors, sizes=(100, 500, 2000), n_predict=100_000)
        bench_ranking(args.predictors, sizes=(25, 50, 100, 200), n_seeds=5)


if __name__ == "__main__":
    main()
