"""Supernet training from scratch: the largest network first, then the sandwich rule with
in-place distillation; resumable."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from torch import nn
from tqdm.auto import tqdm

from optnas.artifacts import save_checkpoint
from optnas.networks.inference import evaluate, memory_format, recalibrate_bn
from optnas.networks.supernet import (
    CHECKPOINT_FORMAT,
    SupernetError,
    extract_subnet,
    read_checkpoint,
    set_active,
    zero_init_residuals,
)
from optnas.spaces.mobilenetv3 import MobileNetV3Space
from optnas.training.distributed import (
    Ranks,
    average_buffers,
    average_gradients,
    barrier,
    broadcast_state,
    check_batch_split,
    current_ranks,
    fingerprint,
    from_main,
    mean_over_processes,
    shard_indices,
)
from optnas.training.loop import seeded

if TYPE_CHECKING:
    from optnas.data.datasets import DataSplits, ImageSet

# Steps between loss updates of the progress bar.
_PROGRESS_EVERY = 20
# Images used to recalibrate BN before the validation of the largest and smallest nets.
_VALIDATION_BN_IMAGES = 2000


def train_supernet(
    supernet: OFAMobileNetV3,
    data: DataSplits,
    *,
    epochs: int,
    out_path: str | Path,
    device: str | torch.device = "cpu",
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 3e-5,
    label_smoothing: float = 0.1,
    warmup_epochs: int | None = None,
    sandwich_lr: float | None = None,
    resolutions: tuple[int, ...] = (32,),
    n_random: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a supernet from scratch: the largest subnet alone, then the sandwich rule.

    The first ``warmup_epochs`` train the largest subnet alone on the labels. Every later step
    trains the largest subnet on the labels, then the smallest and ``n_random`` random
    subnets on the largest's soft predictions (in-place distillation), and takes one SGD step
    on the summed gradients. Distilling from an untrained largest network teaches the others
    nothing: on digits, the sandwich rule from the first step left the smallest subnet below
    16 % after 6 epochs, while 4 epochs of the largest alone and 4 of the sandwich rule took
    the largest to 92 % and the smallest to 86 %. The learning rate follows a cosine per step
    within each phase, from ``lr`` and ``sandwich_lr`` to 0 (Nesterov SGD). A checkpoint,
    recording the recipe, is written atomically to ``out_path`` after every epoch; when
    ``out_path`` already holds one of the same recipe,
    training resumes after its last epoch and, since every epoch is seeded from
    ``(seed, epoch)``, ends with the same weights as an uninterrupted run.

    In an initialised ``torch.distributed`` process group (``torchrun``, see
    :func:`optnas.training.distributed.launched_process_group`), the processes train data-parallel:
    ``batch_size`` stays the global batch, each of the N processes takes its own ``batch_size / N``
    images of it (:func:`~optnas.training.distributed.shard_indices`), all of them train the same
    subnets (drawn from ``(seed, epoch)``, not per process) and average their gradients before
    every step. The recipe is therefore that of one process, and a checkpoint resumes with any
    number of processes; each epoch's record says how many trained it (``processes``). Only the
    first process validates, shows progress and writes the checkpoint. The weights differ from
    one process's: BN normalises each process's part of the batch with its own statistics, and
    augmentation and dropout are drawn per process.

    Args:
        supernet: the supernet, e.g. from :func:`build_supernet`.
        data: the dataset; its validation split scores the largest and smallest subnets.
        epochs: the total number of epochs, resumed ones included.
        out_path: the checkpoint file.
        device: where to train.
        seed: seeds subnet sampling, shuffling, augmentation and dropout.
        batch_size: images per step, over all processes.
        lr: the initial learning rate.
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 penalty on weights (not on BN parameters and biases).
        label_smoothing: of the largest subnet's cross-entropy on the labels.
        warmup_epochs: epochs training the largest subnet alone; None: half of ``epochs``.
        sandwich_lr: the initial learning rate of the sandwich epochs; None: half of ``lr``.
        resolutions: input resolutions subnets are trained at.
        n_random: random subnets per step besides the largest and smallest.
        progress: show a progress bar.

    Returns:
        ``epochs`` (done in total), ``trained_epochs`` (by this call), ``top1_largest`` and
        ``top1_smallest`` (validation accuracy in % after the last epoch),
        ``seconds_per_epoch`` (training time of this call's epochs, validation excluded),
        ``seconds`` (this call's whole time), ``recipe`` and ``processes``.

    Raises:
        SupernetError: ``out_path`` holds a checkpoint of another supernet or recipe.
        ValueError: ``batch_size`` is not a multiple of the number of processes.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if n_random < 0:
        raise ValueError(f"n_random must be zero or more, got {n_random}")
    warmup_epochs = resolved_warmup_epochs(epochs, warmup_epochs)
    if sandwich_lr is None:
        sandwich_lr = lr / 2
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs must be between 0 and epochs ({epochs}), got {warmup_epochs}")
    ranks = current_ranks()
    check_batch_split(batch_size, ranks.size)
    started = time.perf_counter()
    recipe = {"epochs": epochs, "warmup_epochs": warmup_epochs, "lr": lr, "momentum": momentum,
              "nesterov": True, "weight_decay": weight_decay, "label_smoothing": label_smoothing,
              "batch_size": batch_size, "n_random": n_random, "resolutions": list(resolutions),
              "sandwich_lr": sandwich_lr, "schedule": "cosine per step and phase", "init": "residual branches zeroed",
              "distillation": "in-place, soft cross-entropy"}
    out_path = Path(out_path)
    n_classes = supernet.classifier.linear.out_features
    if n_classes != data.n_classes:
        raise SupernetError(
            f"the supernet has {n_classes} outputs and the dataset {data.n_classes} classes"
        )
    space = MobileNetV3Space(width_mult=supernet.width_mult, resolutions=resolutions)
    largest, smallest = space.largest(), space.smallest()
    supernet.to(device, memory_format=memory_format(device))
    optimizer = torch.optim.SGD(
        _parameter_groups(supernet, weight_decay), lr=lr, momentum=momentum, nesterov=True
    )

    history: list[dict[str, float]] = []
    if out_path.exists():
        history = _resume(out_path, supernet, optimizer, n_classes, recipe)
    else:
        zero_init_residuals(supernet)
    if ranks.distributed:
        # Every process resumed the same file; a fresh run starts from the first's initialisation.
        broadcast_state(supernet)
    start = len(history)
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    bar = tqdm(
        total=max(epochs - start, 0) * steps_per_epoch,
        desc="supernet",
        unit="step",
        disable=not (progress and ranks.main),
        dynamic_ncols=True,
    )
    seconds = []
    for epoch in range(start, epochs):
        sandwich = epoch >= warmup_epochs
        phase = "sandwich" if sandwich else "largest"
        bar.set_description(f"supernet epoch {epoch + 1}/{epochs} ({phase})")
        begin = time.perf_counter()
        # A closed-form schedule instead of a scheduler: a resumed run needs no scheduler state.
        # Each phase has its own cosine, so the largest network converges before it teaches.
        phase_start, phase_epochs = (warmup_epochs, epochs - warmup_epochs) if sandwich else (0, warmup_epochs)
        schedule = _CosineSchedule(
            optimizer, sandwich_lr if sandwich else lr, first_step=(epoch - phase_start) * steps_per_epoch,
            total_steps=phase_epochs * steps_per_epoch,
        )
        loss = _train_epoch(
            supernet, data.train, optimizer, schedule, space, largest, smallest if sandwich else None,
            n_random=n_random if sandwich else 0, batch_size=batch_size, label_smoothing=label_smoothing,
            device=device, seed=_epoch_seed(seed, epoch), bar=bar, ranks=ranks,
        )
        if ranks.distributed:
            average_buffers(supernet)
        seconds.append(time.perf_counter() - begin)
        record = {"epoch": epoch + 1, "phase": phase, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": seconds[-1], "processes": ranks.size}
        # Validating costs a third of an epoch here: only where a phase ends, and the smallest
        # subnet only once the sandwich rule has trained it.
        if epoch + 1 in (warmup_epochs, epochs) and ranks.main:
            record["top1_largest"] = _validate(supernet, data, largest, device, seed)
            postfix = {"loss": f"{loss:.3f}", "largest": f"{record['top1_largest']:.1f}"}
            if sandwich or epoch + 1 == epochs:
                record["top1_smallest"] = _validate(supernet, data, smallest, device, seed)
                postfix["smallest"] = f"{record['top1_smallest']:.1f}"
            bar.set_postfix(postfix)
        # The others wait here while the first validates, then record what it found.
        history.append(from_main(record))
        if ranks.main:
            _save_checkpoint(out_path, supernet, optimizer, history, seed=seed, recipe=recipe)
    bar.close()
    # Nobody goes on (to read the checkpoint, say) before the first process has written it.
    barrier()
    supernet.set_max_net()
    supernet.to(memory_format=torch.contiguous_format)
    return {
        "epochs": len(history),
        "trained_epochs": len(seconds),
        "top1_largest": history[-1]["top1_largest"],
        "top1_smallest": history[-1]["top1_smallest"],
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "seconds": time.perf_counter() - started,
        "recipe": recipe,
        "processes": ranks.size,
    }


def resolved_warmup_epochs(epochs: int, warmup_epochs: int | None) -> int:
    """Return the epochs the largest subnet trains alone: ``warmup_epochs``, or half of ``epochs`` if None.

    Args:
        epochs: the total number of epochs.
        warmup_epochs: the epochs asked for, or None.
    """
    return epochs // 2 if warmup_epochs is None else warmup_epochs


class _CosineSchedule:
    """Sets the learning rate of each step: a cosine from ``lr`` to 0 over the whole run."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, *, first_step: int, total_steps: int) -> None:
        self.optimizer, self.lr, self.step, self.total_steps = optimizer, lr, first_step, total_steps

    def advance(self) -> None:
        rate = 0.5 * self.lr * (1.0 + math.cos(math.pi * self.step / self.total_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.step += 1


def _train_epoch(
    supernet: OFAMobileNetV3,
    train: ImageSet,
    optimizer: torch.optim.Optimizer,
    schedule: _CosineSchedule,
    space: MobileNetV3Space,
    largest: dict[str, Any],
    smallest: dict[str, Any] | None,
    *,
    n_random: int,
    batch_size: int,
    label_smoothing: float,
    device: str | torch.device,
    seed: int,
    bar: tqdm,
    ranks: Ranks,
) -> float:
    """Run one epoch and return its mean loss of the largest subnet (over all processes).

    With ``smallest`` None and no random subnets, the largest trains alone; otherwise the
    sandwich rule distils it into the smallest and ``n_random`` random subnets.
    """
    students = ([smallest] if smallest is not None else [])
    # Subnets are drawn from the epoch's seed alone, so every process trains the same ones.
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    supernet.train()
    total = torch.zeros((), device=device)
    n_steps = 0
    # The order is the same everywhere; augmentation and dropout are each process's own.
    local_seed = int(np.random.SeedSequence([seed, ranks.rank]).generate_state(1)[0]) if ranks.distributed else seed
    # Batches are made inside the block: a DataLoader draws its base seed from the global generator.
    with seeded(local_seed, device):
        if ranks.distributed:
            order = torch.randperm(len(train), generator=generator)
            batches = train.subset(shard_indices(order, batch_size, ranks)).batches(
                batch_size // ranks.size, largest["r"], augment=True,
                generator=torch.Generator().manual_seed(local_seed), device=device,
            )
        else:
            batches = train.batches(
                batch_size, largest["r"], shuffle=True, augment=True, generator=generator, device=device
            )
        for images, labels in batches:
            bar.update()
            schedule.advance()
            # Train-mode BN cannot normalise a single image at r=32 (1x1 final feature map).
            # Every process's part of a batch is equally long: all of them skip it or none.
            if len(labels) < 2:
                continue
            images = images.contiguous(memory_format=memory_format(device))
            optimizer.zero_grad(set_to_none=True)
            set_active(supernet, largest)
            teacher = supernet(images)
            loss = F.cross_entropy(teacher, labels, label_smoothing=label_smoothing)
            loss.backward()
            soft_targets = teacher.detach().softmax(dim=1)
            subnets = [*students, *space.sample(rng, n_random)]
            for subnet in subnets:
                set_active(supernet, subnet)
                logits = supernet(_resize(images, subnet["r"]))
                # Soft cross-entropy (OFA's distillation loss): KL up to the teacher's entropy.
                distill = -(soft_targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
                distill.backward()
            if ranks.distributed:
                average_gradients(supernet, ranks, fingerprint([largest, *subnets]))
            optimizer.step()
            total += loss.detach()
            n_steps += 1
            # Reading the loss syncs with the device: only now and then, and only when shown.
            if not bar.disable and n_steps % _PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{total.item() / n_steps:.3f}")
    # Every process took as many steps: the mean of their means is the mean over all of them.
    return mean_over_processes(total.item() / max(n_steps, 1), device)


def _epoch_seed(seed: int, epoch: int) -> int:
    # Each epoch's randomness depends only on (seed, epoch), so a resumed run replays it.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _validate(
    supernet: OFAMobileNetV3,
    data: DataSplits,
    subnet: dict[str, Any],
    device: str | torch.device,
    seed: int,
) -> float:
    """Validation top1 of a subnet after BN recalibration (the shared statistics mix subnets)."""
    network = extract_subnet(supernet, subnet)
    recalibrate_bn(
        network, data.train, resolution=subnet["r"], n_images=_VALIDATION_BN_IMAGES,
        device=device, seed=seed,
    )
    return evaluate(network, data.valid, resolution=subnet["r"], device=device)


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(
        images, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
    )


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # As in OFA: no decay on BN parameters and biases (1-D tensors).
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.ndim > 1 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _resume(
    path: Path, supernet: OFAMobileNetV3, optimizer: torch.optim.Optimizer, n_classes: int,
    recipe: dict[str, Any],
) -> list[dict[str, float]]:
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise SupernetError(
            f"{path}: exists and is not an optnas supernet training checkpoint; "
            "choose another output file"
        )
    if checkpoint["n_classes"] != n_classes or checkpoint["width_mult"] != supernet.width_mult:
        raise SupernetError(
            f"{path}: holds a training run of a {checkpoint['n_classes']}-class "
            f"w{checkpoint['width_mult']} supernet, not {n_classes}-class "
            f"w{supernet.width_mult}; choose another output file"
        )
    if checkpoint.get("recipe") != recipe:
        raise SupernetError(
            f"{path}: holds a training run of another recipe ({_recipe_difference(checkpoint.get('recipe'), recipe)}); "
            "choose another output file"
        )
    nn.Module.load_state_dict(supernet, checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return list(checkpoint["history"])


def _recipe_difference(saved: dict[str, Any] | None, wanted: dict[str, Any]) -> str:
    if not saved:
        return "an earlier optnas version's"
    return ", ".join(f"{key} {saved.get(key)} instead of {value}" for key, value in wanted.items()
                     if saved.get(key) != value)


def _save_checkpoint(
    path: Path,
    supernet: OFAMobileNetV3,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, float]],
    *,
    seed: int,
    recipe: dict[str, Any],
) -> None:
    """Write the training checkpoint atomically: a kill never leaves half a file."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": supernet.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": len(history),
        "history": history,
        "n_classes": supernet.classifier.linear.out_features,
        "width_mult": supernet.width_mult,
        "seed": seed,
        "recipe": recipe,
    }
    save_checkpoint(checkpoint, path)
