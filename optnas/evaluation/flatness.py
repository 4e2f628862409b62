"""Flatness of a trained network (FlatNAS): accuracy lost under multiplicative weight noise.

``robustness`` is the mean absolute top-1 drop, in percentage points, over draws of
``w ← w + σ·w⊙z`` (z ~ N(0, 1), every parameter, BN affine weights included), measured with
the BN running statistics frozen (evaluation mode). A flat minimum loses little.
``top1_robust`` combines it with the error: ``α·(100 − top1) + α_norm·(1 − α)·robustness``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from optnas.networks.inference import evaluate

if TYPE_CHECKING:
    from optnas.data.datasets import ImageSet


def robustness(
    model: nn.Module,
    images: ImageSet,
    *,
    resolution: int,
    sigmas: Sequence[float],
    n_samples: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    top1: float | None = None,
) -> float:
    """Return the mean absolute top-1 drop (percentage points) under multiplicative weight noise.

    For each σ in ``sigmas`` and each of ``n_samples`` draws, every parameter becomes
    ``w + σ·w⊙z`` with z ~ N(0, 1); the drop ``|top1 − top1(noisy)|`` is averaged over all
    draws and sigmas. The model is in evaluation mode throughout (BN statistics frozen) and
    its weights are restored exactly after each draw. The noise comes from a CPU generator
    seeded with ``seed``, so it is the same on every device.

    Args:
        model: the network (left unchanged).
        images: the images to score on (the validation split in a search).
        resolution: input resolution.
        sigmas: relative noise sizes (each ≥ 0).
        n_samples: draws per σ (≥ 1).
        seed: seeds the noise.
        device: where to run.
        top1: the clean accuracy in %, if already known (saves one evaluation).
    """
    sigmas = [float(s) for s in sigmas]
    if not sigmas or any(not np.isfinite(s) or s < 0 for s in sigmas):
        raise ValueError(f"sigma must be one or more numbers >= 0, got {sigmas}")
    if n_samples < 1:
        raise ValueError(f"the number of noise draws must be at least 1, got {n_samples}")
    model.to(device)
    if top1 is None:
        top1 = evaluate(model, images, resolution=resolution, device=device)
    parameters = list(model.parameters())
    originals = [p.detach().clone() for p in parameters]
    generator = torch.Generator().manual_seed(seed)
    drops = []
    try:
        for sigma in sigmas:
            for _ in range(n_samples):
                with torch.no_grad():
                    for parameter, original in zip(parameters, originals):
                        noise = torch.randn(original.shape, generator=generator).to(original.device)
                        parameter.copy_(original + sigma * original * noise)
                noisy = evaluate(model, images, resolution=resolution, device=device)
                drops.append(abs(top1 - noisy))
    finally:
        with torch.no_grad():
            for parameter, original in zip(parameters, originals):
                parameter.copy_(original)
    return float(np.mean(drops))


def top1_robust(top1: float, robustness_value: float, *, alpha: float, alpha_norm: float) -> float:
    """Return ``α·(100 − top1) + α_norm·(1 − α)·robustness`` (lower is better).

    Args:
        top1: validation accuracy in %.
        robustness_value: mean accuracy drop under weight noise (percentage points).
        alpha: weight of the error, in [0, 1].
        alpha_norm: scale of the robustness term (see :func:`alpha_norm`).
    """
    return alpha * (100.0 - top1) + alpha_norm * (1.0 - alpha) * robustness_value


def alpha_norm(top1s: Sequence[float], robustnesses: Sequence[float]) -> float:
    """Return ``mean(100 − top1) / mean(robustness)``, which puts both terms on one scale.

    With no trials yet, or no robustness measured above zero, the terms are left as they are
    (1.0).

    Args:
        top1s: validation accuracies in % of the trials so far.
        robustnesses: their robustness values, in the same order.
    """
    if len(top1s) != len(robustnesses):
        raise ValueError(f"{len(top1s)} accuracies but {len(robustnesses)} robustness values")
    if not len(top1s) or float(np.mean(robustnesses)) <= 0:
        return 1.0
    return float(np.mean(100.0 - np.asarray(top1s, dtype=float)) / np.mean(robustnesses))
