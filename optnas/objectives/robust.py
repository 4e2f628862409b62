"""``top1_robust`` in a study: the α_norm of each iteration, stored so that values recompute.

α_norm balances the error and the robustness terms. It is fixed per iteration, from the
trials of the earlier iterations (the reference code's rule): a trial started when ``c``
trials were complete belongs to iteration 0 (the initial design) if ``c < n_doe``, else to
iteration ``k = 1 + (c − n_doe) // n_iter``, whose α_norm is ``mean(100 − top1) /
mean(robustness)`` over the first ``n_doe + (k − 1)·n_iter`` completed trials (by completion
time). The first trial of an iteration stores it as the study user attribute
``alpha_norm:NNNN`` with the trial numbers it came from; later trials, and other workers,
read it back. Finished trials are immutable in Optuna, so a stored value is never
rewritten: each trial keeps the α_norm of its iteration in its ``alpha_norm`` user attribute.

Iteration 0 has no earlier trials. The reference code used 1 there, which puts the initial
design on another scale than everything after it (robustness is often ten times smaller
than the error), so its trials would dominate the Pareto set for good. Instead, iteration
0's α_norm comes from a pilot: the smallest and the largest architecture of the space,
evaluated as any candidate; their stats are stored with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from optnas import trial_attrs
from optnas.evaluation.flatness import alpha_norm, top1_robust

ALPHA_NORM_ATTR_PREFIX = "alpha_norm:"
# Threads of one process (--jobs) compute each iteration's value once.
_LOCK = threading.Lock()

Pilot = Callable[[], list[dict[str, Any]]]


def iteration_alpha_norm(study: optuna.Study, pilot: Pilot, *, n_doe: int, n_iter: int) -> tuple[int, float]:
    """Return (iteration, α_norm) for a trial starting now, storing α_norm on first use.

    Args:
        study: the study.
        pilot: evaluates the pilot architectures of iteration 0 and returns their stats
            (each with ``subnet``, ``top1``, ``robustness``); called once per study.
        n_doe: trials of the initial design (``--n-doe``).
        n_iter: trials of each later iteration (``--n-iter``).
    """
    with _LOCK:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        iteration = 0 if len(complete) < n_doe else 1 + (len(complete) - n_doe) // n_iter
        key = f"{ALPHA_NORM_ATTR_PREFIX}{iteration:04d}"
        stored = study.user_attrs.get(key)
        if stored is not None:
            return iteration, float(stored["alpha_norm"])
        if iteration == 0:
            stats = pilot()
            value = alpha_norm([s["top1"] for s in stats], [s["robustness"] for s in stats])
            record = {"pilot": [{k: s[k] for k in (trial_attrs.SUBNET, "top1", "robustness")} for s in stats]}
        else:
            n_used = n_doe + (iteration - 1) * n_iter
            used = sorted(complete, key=lambda t: (t.datetime_complete, t.number))[:n_used]
            used = [t for t in used if "robustness" in t.user_attrs]
            value = alpha_norm([t.user_attrs["top1"] for t in used], [t.user_attrs["robustness"] for t in used])
            record = {"trials": [t.number for t in used]}
        study.set_user_attr(key, {"iteration": iteration, "alpha_norm": value, **record})
        return iteration, value


def robust_stats(
    study: optuna.Study, stats: dict[str, Any], pilot: Pilot, *, alpha: float, n_doe: int, n_iter: int,
) -> dict[str, Any]:
    """Return ``top1_robust`` with the α_norm and iteration it was computed with.

    Args:
        study: the study the trial belongs to.
        stats: the trial's stats, with ``top1`` (%) and ``robustness``.
        pilot: see :func:`iteration_alpha_norm`.
        alpha: the weight of the top1 error (``--alpha``).
        n_doe: trials of the initial design (``--n-doe``).
        n_iter: trials of each later iteration (``--n-iter``).
    """
    iteration, norm = iteration_alpha_norm(study, pilot, n_doe=n_doe, n_iter=n_iter)
    value = top1_robust(stats["top1"], stats["robustness"], alpha=alpha, alpha_norm=norm)
    return {"top1_robust": value, "alpha_norm": norm, "alpha_norm_iteration": iteration}
