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

The learning rate follows a cosine over all epochs, changed once per epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from optnas.config import EE_METHODS
from optnas.early_exits import EarlyExitNetwork, exit_outputs, exit_profile, exit_stats, tune_epsilon
from optnas.training import fine_tune, recalibrate_bn, seeded

if TYPE_CHECKING:
    from torch import nn

    from optnas.data import DataSplits, ImageSet

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
    *,
    method: str,
    resolution: int,
    warmup_epochs: int,
    ee_epochs: int,
    exit_macs: Sequence[float],
    mmax: float | None = None,
    w_alpha: float = 1.0,
    w_beta: float = 1.0,
    w_gamma: float = 1.0,
    support_set: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    lr: float = 0.01,
    batch_size: int = 64,
    progress: bool = False,
) -> None:
    """Train an early-exit network in place (see the module docstring).

    Args:
        model: the network; its backbone is left trainable afterwards.
        train: the training images.
        method: ``joint`` or ``confidence``.
        resolution: input resolution.
        warmup_epochs: epochs of the heads alone on the frozen backbone.
        ee_epochs: epochs of the method's own training.
        exit_macs: cumulative MACs (M) per exit, for the energy term.
        mmax: the bound on avg_macs (M), or None.
        w_alpha: weight of the NACHOS accuracy term.
        w_beta: weight of the energy term.
        w_gamma: weight of the support-set term (used with ``support_set`` only).
        support_set: hold out 10 % of ``train`` (class-balanced) and, after the warm-up, pull
            each confidence toward its exit's per-class accuracy on it, measured each epoch.
        device: where to train.
        seed: seeds the support set, shuffling, augmentation and dropout.
        lr: the initial learning rate.
        batch_size: images per step.
        progress: show a progress bar.
    """
    if method not in EE_METHODS:
        raise ValueError(f"--ee-method must be one of {list(EE_METHODS)}, got {method!r}")
    if warmup_epochs < 0 or ee_epochs < 0:
        raise ValueError("--warmup-ee-epochs and --ee-epochs must be zero or more")
    epochs = warmup_epochs + ee_epochs
    if epochs == 0:
        return
    support_images = None
    if support_set and method == "confidence":
        train, support_images = _split_support(train, seed)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-5)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(seed)
    with seeded(seed, device), tqdm(range(epochs), desc=f"exits ({method})", unit="epoch", disable=not progress) as bar:
        for epoch in bar:
            warmup = epoch < warmup_epochs
            model.freeze_backbone(warmup or method == "confidence")
            support = None
            if not warmup and support_images is not None:
                support = _support_accuracy(model, support_images, resolution, device)
            model.train()
            for images, labels in train.batches(
                batch_size, resolution, shuffle=True, augment=True, generator=generator, device=device
            ):
                if len(labels) < 2:  # train-mode BN cannot normalise one image at 1x1
                    continue
                logits, confidences = model(images)
                if warmup:
                    loss = joint_loss(logits[:-1], confidences, labels)
                elif method == "joint":
                    loss = joint_loss(logits, confidences, labels)
                else:
                    terms = confidence_loss(
                        logits, confidences, labels, exit_macs=exit_macs, mmax=mmax, support=support
                    )
                    loss = w_alpha * terms["alpha"] + w_beta * terms["beta"] + w_gamma * terms["gamma"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()
    model.freeze_backbone(False)


def _split_support(train: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out a class-balanced share of the training images as the support set."""
    from optnas.data import _stratified_holdout

    labels = train.labels.numpy()
    kept, held = _stratified_holdout(labels, max(len(np.unique(labels)), int(SUPPORT_FRACTION * len(labels))), seed)
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


def evaluate_ee_candidate(
    supernet: nn.Module,
    subnet: dict[str, Any],
    data: DataSplits,
    *,
    n_epochs: int,
    method: str = "joint",
    warmup_epochs: int = 1,
    ee_epochs: int = 1,
    w_alpha: float = 1.0,
    w_beta: float = 1.0,
    w_gamma: float = 1.0,
    support_set: bool = False,
    tune: bool = False,
    mmax: float | None = None,
    top1min: float | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    bn_images: int = 2000,
) -> tuple[dict[str, Any], EarlyExitNetwork]:
    """Score an eemobilenetv3 candidate on the validation split.

    The backbone inherits the supernet's weights and is fine-tuned for ``n_epochs`` with its
    BN recalibrated (as a mobilenetv3 candidate), the heads are trained by
    :func:`train_exits`, BN is recalibrated over the whole network if the backbone was
    trained with the heads (or the heads were not trained at all), and the thresholds are
    the subnet's, or with ``tune`` those :func:`~optnas.early_exits.tune_epsilon` picks on
    the validation split.

    Args:
        supernet: the OFA supernet (left unchanged).
        subnet: a canonical eemobilenetv3 subnet.
        data: the dataset.
        n_epochs: backbone fine-tuning epochs.
        method: ``joint`` or ``confidence``.
        warmup_epochs: heads-only epochs.
        ee_epochs: epochs of the method's training.
        w_alpha: NACHOS accuracy weight.
        w_beta: energy weight.
        w_gamma: support-set weight.
        support_set: use a NACHOS support set.
        tune: choose the thresholds on the validation split.
        mmax: the bound on avg_macs (M), or None.
        top1min: the bound on top1 (%), or None.
        device: where to run.
        seed: seeds everything.
        bn_images: training images for the BN recalibration.

    Returns:
        The stats (see :func:`~optnas.early_exits.exit_stats`; also ``macs``: the backbone's,
        ``params``: with every head, ``epsilon``: the thresholds used) and the network.
    """
    from optnas.supernet import extract_subnet

    resolution = int(subnet["r"])
    n_classes = data.n_classes
    backbone = extract_subnet(supernet, subnet).to(device)
    fine_tune(backbone, data.train, epochs=n_epochs, resolution=resolution, device=device, seed=seed)
    recalibrate_bn(backbone, data.train, resolution=resolution, n_images=bn_images, device=device, seed=seed)
    model = EarlyExitNetwork(backbone, subnet, n_classes, seed=seed).to(device)
    costs = exit_profile(subnet, n_classes)
    train_exits(
        model, data.train, method=method, resolution=resolution, warmup_epochs=warmup_epochs,
        ee_epochs=ee_epochs, exit_macs=costs["exit_macs"], mmax=mmax, w_alpha=w_alpha,
        w_beta=w_beta, w_gamma=w_gamma, support_set=support_set, device=device, seed=seed,
    )
    if (method == "joint" and ee_epochs > 0) or warmup_epochs + ee_epochs == 0:
        # The backbone changed, or the heads never ran: their statistics must be computed.
        # Otherwise the backbone's are the ones just recalibrated and the heads keep the running
        # statistics of their training, which saves a pass over the training images.
        recalibrate_bn(model, data.train, resolution=resolution, n_images=bn_images, device=device, seed=seed)
    predictions, confidence, labels = exit_outputs(model, data.valid, resolution=resolution, device=device)
    epsilon = model.epsilon
    if tune:
        epsilon = tune_epsilon(predictions, confidence, labels, costs["exit_macs"], mmax=mmax, top1min=top1min)
        model.epsilon = epsilon
    stats = exit_stats(predictions, confidence, labels, epsilon, costs["exit_macs"])
    stats.update({"macs": costs["macs"], "params": costs["params"], "epsilon": list(epsilon)})
    return stats, model.eval()
