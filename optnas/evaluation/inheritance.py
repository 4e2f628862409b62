"""Scoring a candidate with inherited weights: extract it from the supernet, fine-tune it,
recalibrate its BN statistics, evaluate it on the validation split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from optnas.networks.inference import evaluate, recalibrate_bn
from optnas.networks.supernet import extract_subnet
from optnas.spaces.eemobilenetv3 import backbone_subnet
from optnas.training.loop import fine_tune

if TYPE_CHECKING:
    from optnas.data.datasets import DataSplits, ImageSet


def evaluate_candidate(
    supernet: nn.Module,
    subnet: dict[str, Any],
    data: DataSplits,
    *,
    n_epochs: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    lr: float = 0.01,
    batch_size: int = 64,
    bn_images: int = 2000,
    optim: str = "sgd",
    rho: float | None = None,
) -> tuple[float, nn.Module]:
    """Score a candidate: inherit its weights, fine-tune, recalibrate BN, evaluate.

    The same seed gives the same accuracy (bit for bit on CPU; CUDA kernels may be
    nondeterministic).

    Args:
        supernet: the OFA supernet the weights come from (left unchanged).
        subnet: the candidate, a canonical mobilenetv3 subnet with its resolution ``r``.
        data: the dataset; the candidate is scored on its validation split.
        n_epochs: fine-tuning epochs (0 allowed).
        device: where to run.
        seed: seeds fine-tuning and the BN recalibration images.
        lr: the initial fine-tuning learning rate.
        batch_size: fine-tuning images per step.
        bn_images: training images the BN statistics are recomputed on.
        optim: fine-tuning optimiser, ``sgd``, ``sam`` or ``asam``.
        rho: SAM/ASAM radius (None: the optimiser's default).

    Returns:
        The validation top-1 accuracy in % and the fine-tuned network.
    """
    model = inherited_network(
        supernet, subnet, data.train, n_epochs=n_epochs, device=device, seed=seed, lr=lr,
        batch_size=batch_size, bn_images=bn_images, optim=optim, rho=rho,
    )
    return evaluate(model, data.valid, resolution=int(subnet["r"]), device=device), model


def inherited_network(
    supernet: nn.Module,
    subnet: dict[str, Any],
    train: ImageSet,
    *,
    n_epochs: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    lr: float = 0.01,
    batch_size: int = 64,
    bn_images: int = 2000,
    optim: str = "sgd",
    rho: float | None = None,
) -> nn.Module:
    """Return a subnet with the supernet's weights, fine-tuned and with its BN recalibrated.

    Args:
        supernet: the OFA supernet the weights come from (left unchanged).
        subnet: a canonical mobilenetv3 subnet with its resolution ``r`` (an early-exit
            subnet's backbone).
        train: the training images.
        n_epochs: fine-tuning epochs (0 allowed).
        device: where to run.
        seed: seeds fine-tuning and the BN recalibration images.
        lr: the initial fine-tuning learning rate.
        batch_size: fine-tuning images per step.
        bn_images: training images the BN statistics are recomputed on.
        optim: fine-tuning optimiser, ``sgd``, ``sam`` or ``asam``.
        rho: SAM/ASAM radius (None: the optimiser's default).
    """
    if "r" not in subnet:
        raise ValueError("the subnet has no input resolution 'r'; pass its canonical form")
    resolution = int(subnet["r"])
    model = extract_subnet(supernet, backbone_subnet(subnet)).to(device)
    fine_tune(
        model, train, epochs=n_epochs, resolution=resolution, device=device, seed=seed,
        lr=lr, batch_size=batch_size, optim=optim, rho=rho,
    )
    # Also discards the BN statistics that SAM's second forward pass skewed.
    recalibrate_bn(model, train, resolution=resolution, n_images=bn_images, device=device, seed=seed)
    return model
