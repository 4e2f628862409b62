"""Time the accuracy predictors and measure how well they rank held-out architectures.

The data are synthetic OFA MobileNetV3 encodings (5 depth, 20 kernel-size and 20
expand-ratio genes of 3 levels, 1 resolution gene of 25 levels) with a smooth nonlinear
top-1 error (see ``optnas.predictors.datasets.make_mbv3_like``). Prints:

* fit time on 100 / 500 / 2,000 architectures and the time to predict 100,000;
* Kendall's τ on 1,000 unseen architectures against the training-set size (25 to 200),
  averaged over seeds.

Usage: ``python benchmarks/bench_predictors.py [--quick] [--predictors rbf gp ...]``
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


def bench_ranking(names: Sequence[str], sizes: Sequence[int], n_seeds: int) -> None:
    """Print the mean (± std over seeds) Kendall τ on held-out architectures.

    Args:
        names: the predictors.
        sizes: the training-set sizes.
        n_seeds: the independent draws of training and held-out sets.
    """
    datasets = [
        make_mbv3_like(max(sizes) + N_HELD_OUT, n_resolutions=N_RESOLUTIONS, random_state=seed)
        for seed in range(n_seeds)
    ]
    print(f"\nKendall τ on {N_HELD_OUT:,} held-out architectures, mean ± std over {n_seeds} seeds")
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
    args = parser.parse_args()
    if args.quick:
        bench_speed(args.predictors, sizes=(100, 500), n_predict=20_000)
        bench_ranking(args.predictors, sizes=(25, 50, 100, 200), n_seeds=2)
    else:
        bench_speed(args.predictors, sizes=(100, 500, 2000), n_predict=100_000)
        bench_ranking(args.predictors, sizes=(25, 50, 100, 200), n_seeds=5)


if __name__ == "__main__":
    main()
