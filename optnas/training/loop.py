"""The training loop: fine-tuning with SGD or SAM/ASAM, a loss hook, resumable epochs; seeding."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from optnas.networks.inference import memory_format
from optnas.training.recipes import FineTuneRecipe
from optnas.training.sam import make_optimizer

if TYPE_CHECKING:
    from optnas.data.datasets import ImageSet


# Read at import, before any set_threads call changes it: torch starts with one thread per
# physical core, which may be more than the CPUs this process is allowed on (a container's cpuset).
_USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_PHYSICAL_CORES = max(1, min(torch.get_num_threads(), _USABLE_CPUS))


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads and return the number set.

    Args:
        threads: the number of threads; None means torch's own default, one per physical
            core (hyperthreads share a core's arithmetic units, and OpenMP threads that
            outnumber free cores spin and slow training several-fold).
    """
    count = threads if threads is not None else _PHYSICAL_CORES
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
    recipe: FineTuneRecipe,
    *,
    resolution: int,
    progress: bool = False,
    resume: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
) -> None:
    """Train a network with SGD (or SAM/ASAM around it) and a cosine learning rate that changes once per epoch.

    A run interrupted after epoch k and continued with ``resume`` set to the state that
    ``on_epoch_end`` got at epoch k (and the model's weights of that epoch) ends bit for bit
    where the uninterrupted run ends, on CPU.

    Args:
        model: the network, trained in place.
        train: the training images.
        recipe: epochs (0 leaves the model untouched), learning rate, batch size, optimiser,
            device and seed (of shuffling, augmentation and dropout); ``bn_images`` is left to
            the caller's BN recalibration.
        resolution: input resolution.
        progress: show a progress bar with the running loss and training accuracy.
        resume: a training state given to ``on_epoch_end``; training continues after its epoch.
        on_epoch_end: called after every epoch with the number of epochs done and the training
            state (optimizer, schedule, random generators), e.g. to write a checkpoint.
        loss: maps the model's output and the labels to the loss [default: cross-entropy of
            the logits]; an early-exit network's output is scored on its final exit's logits.
        on_epoch_start: called with the 0-based epoch before its first step, e.g. to freeze
            part of the model or change what ``loss`` computes for that epoch.
    """
    epochs, device, seed, batch_size = recipe.epochs, recipe.device, recipe.seed, recipe.batch_size
    if epochs < 0:
        raise ValueError(f"epochs must be zero or more, got {epochs}")
    if epochs == 0:
        return
    was_training = model.training
    layout = memory_format(device)
    model.to(device, memory_format=layout).train()
    optimizer = make_optimizer(recipe.optim, model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay, rho=recipe.rho)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(seed)
    start = 0
    with seeded(seed, device):
        if resume is not None:
            start = _restore_training_state(resume, optimizer, scheduler, generator, device)
        with tqdm(range(start, epochs), initial=start, total=epochs, desc="fine-tune", unit="epoch",
                  disable=not progress) as bar:
            for epoch in bar:
                if on_epoch_start is not None:
                    on_epoch_start(epoch)
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
                    images = images.contiguous(memory_format=layout)
                    # SAM/ASAM call the closure twice; the first call scores the step's batch.
                    step_logits: list[torch.Tensor] = []

                    def closure(images: torch.Tensor = images, labels: torch.Tensor = labels,
                                step_logits: list[torch.Tensor] = step_logits) -> torch.Tensor:
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
