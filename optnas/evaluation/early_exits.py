"""Scoring early-exit networks: threshold tuning and a candidate's score.

See :mod:`optnas.networks.early_exits` for the network, its costs and the exit conventions.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from optnas.evaluation.inheritance import inherited_network
from optnas.networks.early_exits import EarlyExitNetwork, exit_outputs, exit_stats
from optnas.networks.exit_costs import exit_profile
from optnas.networks.inference import recalibrate_bn
from optnas.spaces.eemobilenetv3 import EPSILONS
from optnas.training.early_exits import train_exits
from optnas.training.recipes import ExitRecipe, FineTuneRecipe

if TYPE_CHECKING:
    from torch import nn

    from optnas.data.datasets import DataSplits


def tune_epsilon(
    predictions: torch.Tensor, confidence: torch.Tensor, labels: torch.Tensor,
    exit_macs: Sequence[float], *, mmax: float | None = None, top1min: float | None = None,
) -> list[float]:
    """Choose the thresholds that maximise accuracy subject to ``avg_macs ≤ mmax`` and ``top1 ≥ top1min``.

    Every combination of :data:`~optnas.spaces.eemobilenetv3.EPSILONS` over the exits is
    scored (at most 9⁴ on cached outputs, a fraction of a second). Among the feasible ones
    the most accurate wins, ties going to the lower avg_macs; when none is feasible, the one
    with the smallest relative violation of the two bounds.

    Args:
        predictions: per-exit predictions, as from :func:`exit_outputs`.
        confidence: per-exit confidences.
        labels: the labels.
        exit_macs: cumulative MACs (M) per exit.
        mmax: the bound on avg_macs (M), or None.
        top1min: the bound on top1 (%), or None.

    Returns:
        One threshold per intermediate exit.
    """
    n_exits = confidence.shape[0]
    grid = np.array(list(itertools.product(EPSILONS, repeat=n_exits)))
    correct = (predictions == labels[None, :]).numpy()
    exit_macs = np.asarray(exit_macs, dtype=np.float64)
    conf = confidence.numpy()
    best, best_key = None, None
    for row in grid:
        # Compared in the confidences' precision, as exit_decisions compares them at inference.
        fired = np.vstack([conf >= row[:, None].astype(conf.dtype), np.ones((1, conf.shape[1]), dtype=bool)])
        chosen = fired.argmax(axis=0)
        top1 = 100.0 * correct[chosen, np.arange(len(chosen))].mean()
        avg_macs = exit_macs[chosen].mean()
        violation = 0.0
        if mmax is not None:
            violation += max(0.0, avg_macs / mmax - 1.0)
        if top1min is not None and top1min > 0:
            violation += max(0.0, 1.0 - top1 / top1min)
        key = (violation, -top1, avg_macs)
        if best_key is None or key < best_key:
            best, best_key = row, key
    return [float(value) for value in best]


def evaluate_ee_candidate(
    supernet: nn.Module,
    subnet: dict[str, Any],
    data: DataSplits,
    recipe: FineTuneRecipe,
    exits: ExitRecipe,
) -> tuple[dict[str, Any], EarlyExitNetwork]:
    """Score an eemobilenetv3 candidate on the validation split.

    The backbone inherits the supernet's weights and is fine-tuned by ``recipe`` with its BN
    recalibrated (as a mobilenetv3 candidate), the heads are trained by :func:`train_exits`
    (with the recipe's optimiser, device and seed), BN is recalibrated over the whole network
    if the backbone was trained with the heads (or the heads were not trained at all), and the
    thresholds are the subnet's, or with ``exits.tune`` those :func:`tune_epsilon` picks on
    the validation split under ``exits.mmax`` and ``exits.top1min``.

    Args:
        supernet: the OFA supernet (left unchanged).
        subnet: a canonical eemobilenetv3 subnet.
        data: the dataset.
        recipe: the backbone's fine-tuning (its seed seeds everything).
        exits: how the heads are trained and the thresholds chosen.

    Returns:
        The stats (see :func:`exit_stats`; also ``macs``: the backbone's,
        ``params``: with every head, ``epsilon``: the thresholds used) and the network.
    """
    resolution = int(subnet["r"])
    n_classes = data.n_classes
    device, seed = recipe.device, recipe.seed
    backbone = inherited_network(supernet, subnet, data.train, recipe)
    model = EarlyExitNetwork(backbone, subnet, n_classes, seed=seed).to(device)
    costs = exit_profile(subnet, n_classes)
    train_exits(model, data.train, recipe, exits, resolution=resolution, exit_macs=costs["exit_macs"])
    if (exits.method == "joint" and exits.ee_epochs > 0) or exits.warmup_epochs + exits.ee_epochs == 0:
        # The backbone changed, or the heads never ran: their statistics must be computed.
        # Otherwise the backbone's are the ones just recalibrated and the heads keep the running
        # statistics of their training, which saves a pass over the training images.
        recalibrate_bn(model, data.train, resolution=resolution, n_images=recipe.bn_images, device=device, seed=seed)
    predictions, confidence, labels = exit_outputs(model, data.valid, resolution=resolution, device=device)
    epsilon = model.epsilon
    if exits.tune:
        epsilon = tune_epsilon(predictions, confidence, labels, costs["exit_macs"], mmax=exits.mmax,
                               top1min=exits.top1min)
        model.epsilon = epsilon
    stats = exit_stats(predictions, confidence, labels, epsilon, costs["exit_macs"])
    stats.update({"macs": costs["macs"], "params": costs["params"], "epsilon": list(epsilon)})
    return stats, model.eval()
