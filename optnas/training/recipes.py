"""What a fine-tuning run and an exit training are made of, as values (no torch, so that the
configuration builds them without importing it)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class FineTuneRecipe:
    """How a network is fine-tuned (:func:`~optnas.training.loop.fine_tune`) and its BN statistics
    recomputed afterwards.

    Args:
        epochs: training epochs (0 leaves the network untouched).
        lr: the initial learning rate (a cosine over the epochs, changed once per epoch).
        batch_size: images per step.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        optim: ``sgd``, or ``sam`` / ``asam`` for sharpness-aware steps (two passes each).
        rho: SAM/ASAM neighbourhood radius [default: 0.05 for SAM, 0.5 for ASAM].
        bn_images: training images the BN statistics are recomputed on after training.
        device: where to train.
        seed: seeds shuffling, augmentation, dropout and the BN recalibration images.
    """

    epochs: int
    lr: float = 0.01
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-5
    optim: str = "sgd"
    rho: float | None = None
    bn_images: int = 2000
    device: str | torch.device = "cpu"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class ExitRecipe:
    """How an early-exit network's heads are trained (:func:`~optnas.training.early_exits.train_exits`)
    and its thresholds chosen.

    Args:
        method: ``joint`` (EDANAS) or ``confidence`` (NACHOS).
        warmup_epochs: epochs of the heads alone on the frozen backbone.
        ee_epochs: epochs of the method's own training.
        w_alpha: weight of the NACHOS accuracy term.
        w_beta: weight of the energy term.
        w_gamma: weight of the support-set term (with ``support_set`` only).
        support_set: hold out 10 % of the training images (class-balanced) and pull each
            confidence toward its exit's per-class accuracy on them.
        mmax: the bound on avg_macs (M) of the energy term and of the tuned thresholds, or None.
        tune: choose the thresholds on the validation split instead of the subnet's.
        top1min: the bound on top1 (%) of the tuned thresholds, or None.
    """

    method: str = "joint"
    warmup_epochs: int = 1
    ee_epochs: int = 1
    w_alpha: float = 1.0
    w_beta: float = 1.0
    w_gamma: float = 1.0
    support_set: bool = False
    mmax: float | None = None
    tune: bool = False
    top1min: float | None = None
