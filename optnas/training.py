"""Fine-tuning, BN recalibration and evaluation of candidate networks."""

from __future__ import annotations

import contextlib
import os
import random
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from optnas.sam import make_optimizer

if TYPE_CHECKING:
    from optnas.data import DataSplits, ImageSet


# Per training split: (image count, seed) -> the BN recalibration images. Weak keys, so that
# a split's prepared images go when the split does.
_CALIBRATION_SETS: weakref.WeakKeyDictionary[ImageSet, dict[tuple[int, int], ImageSet]] = (
    weakref.WeakKeyDictionary()
)


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads and return the number set.

    Args:
        threads: the number of threads; None means half the logical CPUs (at least 1), since
            OpenMP threads that outnumber free cores spin and slow training several-fold.
    """
    count = threads if threads is not None else max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(count)
    return count


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (every device's) global generators.

    Args:
        seed: the seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Seed PyTorch's global generators inside the block and restore them after it.

    Dropout and other in-model randomness then depend on ``seed`` alone, without the
    caller's random state being changed.

    Args:
        seed: the seed.
        device: the device whose generator is saved and restored along with the CPU's.
    """
    device = torch.device(device)
    devices = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def fine_tune(
    model: nn.Module,
    train: ImageSet,
    *,
    epochs: int,
    resolution: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    lr: float = 0.01,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-5,
    progress: bool = False,
    resume: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    optim: str = "sgd",
    rho: float | None = None,
    loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Train a network with SGD (or SAM/ASAM around it) and a cosine learning rate that changes once per epoch.

    A run interrupted after epoch k and continued with ``resume`` set to the state that
    ``on_epoch_end`` got at epoch k (and the model's weights of that epoch) ends bit for bit
    where the uninterrupted run ends, on CPU.

    Args:
        model: the network, trained in place.
        train: the training images.
        epochs: epochs to train; 0 leaves the model untouched.
        resolution: input resolution.
        device: where to train.
        seed: seeds shuffling, augmentation and dropout.
        lr: the initial learning rate.
        batch_size: images per step.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        progress: show a progress bar with the running loss and training accuracy.
        resume: a training state given to ``on_epoch_end``; training continues after its epoch.
        on_epoch_end: called after every epoch with the number of epochs done and the training
            state (optimizer, schedule, random generators), e.g. to write a checkpoint.
        optim: ``sgd``, or ``sam`` / ``asam`` for sharpness-aware steps (two passes each).
        rho: SAM/ASAM neighbourhood radius [default: 0.05 for SAM, 0.5 for ASAM].
        loss: maps the model's output and the labels to the loss [default: cross-entropy of
            the logits]; an early-exit network's output is scored on its final exit's logits.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be zero or more, got {epochs}")
    if epochs == 0:
        return
    was_training = model.training
    model.to(device).train()
    optimizer = make_optimizer(
        optim, model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, rho=rho
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(seed)
    start = 0
    with seeded(seed, device):
        if resume is not None:
            start = _restore_training_state(resume, optimizer, scheduler, generator, device)
        with tqdm(range(start, epochs), initial=start, total=epochs, desc="fine-tune", unit="epoch",
                  disable=not progress) as bar:
            for epoch in bar:
                # Loss and hits stay on the device; one sync per epoch keeps the loop as fast
                # as a plain PyTorch one.
                total = torch.zeros((), device=device)
                correct = torch.zeros((), dtype=torch.long, device=device)
                n_steps = n_images = 0
                for images, labels in train.batches(
                    batch_size, resolution, shuffle=True, augment=True, generator=generator,
                    device=device,
                ):
                    # Train-mode BN cannot normalise one image once the feature map is 1x1.
                    if len(labels) < 2:
                        continue
                    # SAM/ASAM call the closure twice; the first call scores the step's batch.
                    step_logits: list[torch.Tensor] = []

                    def closure(images: torch.Tensor = images, labels: torch.Tensor = labels) -> torch.Tensor:
                        optimizer.zero_grad(set_to_none=True)
                        outputs = model(images)
                        value = F.cross_entropy(outputs, labels) if loss is None else loss(outputs, labels)
                        value.backward()
                        step_logits.append(_final_logits(outputs).detach())
                        return value

                    step_loss = optimizer.step(closure)
                    if progress:
                        total += step_loss.detach()
                        correct += (step_logits[0].argmax(dim=1) == labels).sum()
                        n_steps += 1
                        n_images += len(labels)
                scheduler.step()
                if progress:
                    bar.set_postfix(loss=f"{total.item() / max(n_steps, 1):.3f}",
                                    top1=f"{100.0 * correct.item() / max(n_images, 1):.1f}")
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, _training_state(epoch + 1, optimizer, scheduler, generator, device))
    model.train(was_training)


def _final_logits(outputs: Any) -> torch.Tensor:
    """The logits a training step is scored on: an early-exit network's (every exit's logits,
    confidences) give their final exit's."""
    return outputs[0][-1] if isinstance(outputs, tuple) else outputs


def _training_state(
    epoch: int, optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
    device: str | torch.device,
) -> dict[str, Any]:
    device = torch.device(device)
    return {
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        # Dropout draws from the global generators that `seeded` forked.
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _restore_training_state(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
    device: str | torch.device,
) -> int:
    device = torch.device(device)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["cpu_rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return int(state["epoch"])


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
    model.to(device).eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches
        norm.train()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                if len(batch) > 1:  # one image gives no variance at a 1x1 feature map
                    model(batch)
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
    model.to(device).eval()
    # Counted on the device: a single sync at the end.
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            logits = model(inputs[start : start + batch_size])
            correct += (logits.argmax(dim=1) == labels[start : start + batch_size]).sum()
    model.train(was_training)
    return 100.0 * correct.item() / len(labels)


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
    # Imported here because supernet.py uses this module's loops.
    from optnas.supernet import extract_subnet

    if "r" not in subnet:
        raise ValueError("the subnet has no input resolution 'r'; pass its canonical form")
    resolution = int(subnet["r"])
    model = extract_subnet(supernet, subnet).to(device)
    fine_tune(
        model, data.train, epochs=n_epochs, resolution=resolution, device=device, seed=seed,
        lr=lr, batch_size=batch_size, optim=optim, rho=rho,
    )
    # Also discards the BN statistics that SAM's second forward pass skewed.
    recalibrate_bn(
        model, data.train, resolution=resolution, n_images=bn_images, device=device, seed=seed
    )
    return evaluate(model, data.valid, resolution=resolution, device=device), model
