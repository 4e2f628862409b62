"""Running a network on images: BN recalibration and top-1 accuracy."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from optnas.data.datasets import ImageSet


# Per training split: (image count, seed) -> the BN recalibration images. Weak keys, so that
# a split's prepared images go when the split does.
_CALIBRATION_SETS: weakref.WeakKeyDictionary[ImageSet, dict[tuple[int, int], ImageSet]] = (
    weakref.WeakKeyDictionary()
)


def memory_format(device: str | torch.device) -> torch.memory_format:
    """Return the layout networks run in on a device: channels_last on CPUs, else contiguous.

    On CPUs oneDNN's convolutions, the depthwise ones above all, ran 2-3x faster on
    channels_last tensors (a training step of the largest MobileNetV3 subnet at 32x32: 0.77 s
    against 1.78 s on one thread); GPUs keep PyTorch's default.

    Args:
        device: where the network runs.
    """
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def recalibrate_bn(
    model: nn.Module,
    train: ImageSet,
    *,
    resolution: int,
    n_images: int = 2000,
    batch_size: int = 200,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> None:
    """Recompute every BatchNorm's running statistics on a fixed subset of training images.

    Inherited statistics were accumulated over many subnets and do not fit the extracted one.
    They are reset and recomputed as plain averages over the batches of ``n_images`` images
    drawn with ``seed``; only BN layers run in training mode (dropout stays off), and every
    module's mode and BN momentum are restored afterwards.

    Args:
        model: the network, updated in place.
        train: the training images.
        resolution: input resolution.
        n_images: images to average over (all of them if fewer).
        batch_size: images per forward pass.
        device: where to run.
        seed: selects the images.
    """
    norms = [
        module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    if not norms:
        return
    images, _ = _calibration_set(train, n_images, seed).tensors(resolution, device=device)
    modes = [(module, module.training) for module in model.modules()]
    momenta = [norm.momentum for norm in norms]
    layout = memory_format(device)
    model.to(device, memory_format=layout).eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches
        norm.train()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                if len(batch) > 1:  # one image gives no variance at a 1x1 feature map
                    model(batch.contiguous(memory_format=layout))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        for module, training in modes:
            module.training = training


def _calibration_set(train: ImageSet, n_images: int, seed: int) -> ImageSet:
    """Return the images BN statistics are recomputed on, drawn once per (split, count, seed).

    Every candidate of a search recalibrates on the same images; kept here, they are drawn,
    decoded, resized and normalised once (the subset caches its :meth:`ImageSet.tensors`)
    instead of once per candidate.
    """
    subsets = _CALIBRATION_SETS.setdefault(train, {})
    key = (min(n_images, len(train)), seed)
    if key not in subsets:
        generator = torch.Generator().manual_seed(seed)
        subsets[key] = train.subset(torch.randperm(len(train), generator=generator)[: key[0]].tolist())
    return subsets[key]


def evaluate(
    model: nn.Module,
    images: ImageSet,
    *,
    resolution: int,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> float:
    """Return the top-1 accuracy in % of a network on a set of images.

    Args:
        model: the network.
        images: the images to classify.
        resolution: input resolution.
        batch_size: images per forward pass.
        device: where to run.
    """
    inputs, labels = images.tensors(resolution, device=device)
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    was_training = model.training
    layout = memory_format(device)
    model.to(device, memory_format=layout).eval()
    # Counted on the device: a single sync at the end.
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            logits = model(inputs[start : start + batch_size].contiguous(memory_format=layout))
            correct += (logits.argmax(dim=1) == labels[start : start + batch_size]).sum()
    model.train(was_training)
    return 100.0 * correct.item() / len(labels)
