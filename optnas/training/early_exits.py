"""Training early-exit networks (EDANAS joint, NACHOS confidence) and scoring a candidate.

Both methods start with ``warmup_epochs`` in which the heads alone learn on the frozen
backbone (cross-entropy of their class logits, binary cross-entropy of their confidence
against "this exit is right"). Then, for ``ee_epochs``:

``joint`` (EDANAS)
    backbone and heads together, loss = Σ over every exit, final included, of its
    cross-entropy, plus the heads' confidence BCE.
``confidence`` (NACHOS)
    frozen backbone; with ``c_i`` the confidence of head ``i`` and ``q_i = c_i Π_{j<i}(1−c_j)``
    the probability of leaving at exit ``i`` (``q_final = Π(1−c_j)``), see
    :func:`confidence_loss`. Unlike the reference, the energy term is built from ``q`` and so
    has a gradient.

Both run in :func:`~optnas.training.loop.fine_tune`, whose loss hook changes with the phase:
the learning rate follows a cosine over all epochs, changed once per epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from optnas.data.datasets import stratified_holdout
from optnas.errors import OptionError
from optnas.networks.early_exits import EarlyExitNetwork, exit_outputs
from optnas.training import EE_METHODS
from optnas.training.loop import fine_tune
from optnas.training.recipes import ExitRecipe, FineTuneRecipe

if TYPE_CHECKING:
    from optnas.data.datasets import ImageSet

# Share of the training images held out, class-balanced, as the NACHOS support set.
SUPPORT_FRACTION = 0.1


def joint_loss(logits: list[torch.Tensor], confidences: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """EDANAS loss: Σ of every exit's cross-entropy plus each head's confidence BCE.

    Args:
        logits: class logits of every exit, final last.
        confidences: confidence logits of the intermediate exits.
        labels: the labels.
    """
    loss = sum(F.cross_entropy(exit_logits, labels) for exit_logits in logits)
    return loss + _confidence_bce(logits, confidences, labels)


def confidence_loss(
    logits: list[torch.Tensor],
    confidences: list[torch.Tensor],
    labels: torch.Tensor,
    *,
    exit_macs: Sequence[float],
    mmax: float | None = None,
    support: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """NACHOS loss terms, each a differentiable function of the heads' outputs.

    ``alpha``: the expected cross-entropy ``mean Σ_i q_i CE_i`` (low when samples leave where
    the exit is right) plus the confidences' BCE against correctness. ``beta`` (energy): the
    expected MACs ``E = Σ_i q_i exit_macs_i``, as ``mean relu(E / mmax − 1)`` when ``mmax`` is
    set, else ``mean E / exit_macs_final``. ``gamma``: ``MSE(c_i, S[y, i])`` against the
    per-class accuracy of each exit on the support set (zero without one).

    Args:
        logits: class logits of every exit, final last.
        confidences: confidence logits of the intermediate exits.
        labels: the labels.
        exit_macs: cumulative MACs (M) to leave at each exit.
        mmax: the bound on avg_macs (M), or None.
        support: ``n_classes x n_exits`` accuracies in [0, 1] from the support set, or None.

    Returns:
        ``alpha``, ``beta`` and ``gamma``.
    """
    confidence = torch.sigmoid(torch.stack(confidences, dim=1))  # N x n_exits
    staying = torch.cumprod(1.0 - confidence, dim=1)
    before = torch.cat([torch.ones_like(staying[:, :1]), staying[:, :-1]], dim=1)
    leave = torch.cat([confidence * before, staying[:, -1:]], dim=1)  # N x (n_exits + 1)
    cross_entropy = torch.stack([F.cross_entropy(x, labels, reduction="none") for x in logits], dim=1)
    alpha = (leave * cross_entropy).sum(dim=1).mean() + _confidence_bce(logits, confidences, labels)
    macs = torch.as_tensor(list(exit_macs), dtype=leave.dtype, device=leave.device)
    expected = leave @ macs
    beta = F.relu(expected / mmax - 1.0).mean() if mmax is not None else expected.mean() / macs[-1]
    gamma = F.mse_loss(confidence, support[labels]) if support is not None else confidence.sum() * 0.0
    return {"alpha": alpha, "beta": beta, "gamma": gamma}


def _confidence_bce(logits: list[torch.Tensor], confidences: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """BCE of each head's confidence logit against whether its prediction is right."""
    return sum(
        F.binary_cross_entropy_with_logits(confidence, (exit_logits.argmax(dim=1) == labels).float())
        for exit_logits, confidence in zip(logits, confidences)
    )


def train_exits(
    model: EarlyExitNetwork,
    train: ImageSet,
    recipe: FineTuneRecipe,
    exits: ExitRecipe,
    *,
    resolution: int,
    exit_macs: Sequence[float],
    progress: bool = False,
) -> None:
    """Train an early-exit network in place (see the module docstring), with :func:`fine_tune`.

    Args:
        model: the network; its backbone is left trainable afterwards.
        train: the training images.
        recipe: learning rate, batch size, optimiser, device and seed (of the support set,
            shuffling, augmentation and dropout); its epochs are those of ``exits``.
        exits: the method, its epochs (the heads alone on the frozen backbone for
            ``warmup_epochs``, then ``ee_epochs`` of the method's own training), the NACHOS
            weights and ``mmax`` of the energy term; with ``support_set``, 10 % of ``train`` is
            held out (class-balanced) and, after the warm-up, each confidence is pulled toward
            its exit's per-class accuracy on it, measured each epoch.
        resolution: input resolution.
        exit_macs: cumulative MACs (M) per exit, for the energy term.
        progress: show a progress bar.
    """
    method = exits.method
    if method not in EE_METHODS:
        raise OptionError("{ee_method} must be one of {methods}, got {value!r}", methods=list(EE_METHODS), value=method)
    if exits.warmup_epochs < 0 or exits.ee_epochs < 0:
        raise OptionError("{warmup_ee_epochs} and {ee_epochs} must be zero or more")
    epochs = exits.warmup_epochs + exits.ee_epochs
    if epochs == 0:
        return
    device = recipe.device
    support_images = None
    if exits.support_set and method == "confidence":
        train, support_images = _split_support(train, recipe.seed)
    # What the epoch under way trains: the heads alone first, then the method's own loss.
    phase: dict[str, Any] = {"warmup": True, "support": None}

    def start_epoch(epoch: int) -> None:
        phase["warmup"] = epoch < exits.warmup_epochs
        model.freeze_backbone(phase["warmup"] or method == "confidence")
        if not phase["warmup"] and support_images is not None:
            phase["support"] = _support_accuracy(model, support_images, resolution, device)

    def loss(outputs: tuple[list[torch.Tensor], list[torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        logits, confidences = outputs
        if phase["warmup"]:
            return joint_loss(logits[:-1], confidences, labels)
        if method == "joint":
            return joint_loss(logits, confidences, labels)
        terms = confidence_loss(logits, confidences, labels, exit_macs=exit_macs, mmax=exits.mmax,
                                support=phase["support"])
        return exits.w_alpha * terms["alpha"] + exits.w_beta * terms["beta"] + exits.w_gamma * terms["gamma"]

    fine_tune(model, train, dataclasses.replace(recipe, epochs=epochs), resolution=resolution, progress=progress,
              loss=loss, on_epoch_start=start_epoch)
    model.freeze_backbone(False)


def _split_support(train: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out a class-balanced share of the training images as the support set."""
    labels = train.labels.numpy()
    kept, held = stratified_holdout(labels, max(len(np.unique(labels)), int(SUPPORT_FRACTION * len(labels))), seed)
    return train.subset(kept.tolist()), train.subset(held.tolist())


def _support_accuracy(model: EarlyExitNetwork, support: ImageSet, resolution: int, device: Any) -> torch.Tensor:
    """``n_classes x n_exits``: accuracy of each intermediate exit on each class of the support set."""
    predictions, _, labels = exit_outputs(model, support, resolution=resolution, device=device)
    correct = (predictions[:-1] == labels[None, :]).float()  # n_exits x N
    n_classes = support.n_classes
    counts = torch.bincount(labels, minlength=n_classes).clamp(min=1).float()
    per_class = torch.zeros(n_classes, correct.shape[0])
    per_class.index_add_(0, labels, correct.T)
    return (per_class / counts[:, None]).to(device)
