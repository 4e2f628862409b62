"""OFA MobileNetV3 supernets: building, loading, sandwich-rule training and subnet extraction."""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from ofa.utils.my_modules import init_models
from torch import nn
from tqdm.auto import tqdm

from optnas.spaces.mobilenetv3 import (
    DEPTHS,
    EXPAND_RATIOS,
    KERNEL_SIZES,
    WIDTH_MULTS,
    MobileNetV3Space,
)
from optnas.training import evaluate, recalibrate_bn, seeded

if TYPE_CHECKING:
    from optnas.data import DataSplits, ImageSet

CHECKPOINT_FORMAT = "optnas-supernet-v1"
_CLASSIFIER_KEYS = ("classifier.linear.weight", "classifier.linear.bias")
# Module names of older OFA releases and ours (the renames OFA's own loader tries).
_LEGACY_NAMES = (
    (".bn.bn.", ".bn."),
    (".conv.conv.weight", ".conv.weight"),
    (".linear.linear.", ".linear."),
    (".linear.", ".linear.linear."),
    ("bn.", "bn.bn."),
    ("conv.weight", "conv.conv.weight"),
)
# Steps between loss updates of the progress bar.
_PROGRESS_EVERY = 20
# Images used to recalibrate BN before the per-epoch validation of the largest and smallest nets.
_VALIDATION_BN_IMAGES = 2000


class SupernetError(ValueError):
    """A supernet checkpoint or subnet that cannot be used; the message is one line for users."""


def build_supernet(
    n_classes: int, width_mult: float = 1.0, dropout_rate: float = 0.1, *, seed: int = 0
) -> OFAMobileNetV3:
    """Build an untrained OFA MobileNetV3 supernet (``ofa_mbv3_d234_e346_k357``).

    Args:
        n_classes: outputs of the classifier.
        width_mult: the width multiplier, 1.0 or 1.2.
        dropout_rate: dropout before the classifier.
        seed: seeds the weight initialisation, so two builds are identical.
    """
    if float(width_mult) not in WIDTH_MULTS:
        raise SupernetError(f"width multiplier must be one of {WIDTH_MULTS}, got {width_mult}")
    if n_classes < 1:
        raise SupernetError(f"the supernet needs at least one class, got {n_classes}")
    # fork_rng keeps the caller's global RNG untouched by the seeded initialisation.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        supernet = OFAMobileNetV3(
            n_classes=n_classes,
            dropout_rate=dropout_rate,
            width_mult=float(width_mult),
            ks_list=list(KERNEL_SIZES),
            expand_ratio_list=list(EXPAND_RATIOS),
            depth_list=list(DEPTHS),
        )
        # OFA's from-scratch initialisation: He (fan-out) convolutions, unit BN scales.
        init_models(supernet, "he_fout")
    return supernet


def load_supernet(
    path: str | Path,
    n_classes: int,
    width_mult: float = 1.0,
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
) -> tuple[OFAMobileNetV3, list[str]]:
    """Load a supernet checkpoint: the published OFA format or an optnas training checkpoint.

    The file is always read with ``weights_only=True``, so loading it cannot run code. When the
    checkpoint's classifier has another class count than ``n_classes``, the classifier is
    re-initialised (its rows are never sliced) and a message says so.

    Args:
        path: the checkpoint, a dict holding ``state_dict`` (e.g.
            ``ofa_mbv3_d234_e346_k357_w1.0``).
        n_classes: classes of the task.
        width_mult: the width multiplier the checkpoint must have.
        device: where to put the supernet.
        seed: seeds a re-initialised classifier.

    Returns:
        The supernet and the messages for the user.

    Raises:
        SupernetError: the file is missing, unreadable, or holds another network.
    """
    path = Path(path)
    checkpoint = _read_checkpoint(path)
    if checkpoint.get("format") == CHECKPOINT_FORMAT:
        saved_width = float(checkpoint.get("width_mult", width_mult))
        if saved_width != float(width_mult):
            raise SupernetError(
                f"{path}: holds a width_mult={saved_width} supernet, not {float(width_mult)}"
            )
    supernet = build_supernet(n_classes, width_mult, seed=seed)
    state_dict = _rename_keys(path, _state_dict_of(path, checkpoint), supernet)

    messages = []
    saved_classes = state_dict.get(_CLASSIFIER_KEYS[0])
    reinitialise = saved_classes is not None and saved_classes.shape[0] != n_classes
    if reinitialise:
        # Slicing an ImageNet head to the first n rows (the reference) gives a meaningless
        # head; the freshly built classifier is kept instead, and training must fit it.
        messages.append(
            f"{path}: the checkpoint's classifier has {saved_classes.shape[0]} classes, "
            f"the task {n_classes}; the classifier is re-initialised"
        )
        for key in _CLASSIFIER_KEYS:
            state_dict.pop(key, None)
    optional = _CLASSIFIER_KEYS if reinitialise else ()
    _check_state_dict(path, state_dict, supernet, width_mult, optional=optional)
    nn.Module.load_state_dict(supernet, state_dict, strict=False)
    return supernet.to(device), messages


def extract_subnet(supernet: OFAMobileNetV3, subnet: dict[str, Any]) -> nn.Module:
    """Return the subnet as a standalone static network with copies of the supernet's weights.

    Every one of the 20 layer slots gets its kernel size and expand ratio from the canonical
    subnet, so values land on the right blocks for any depth, and the supernet's previously
    active subnet is restored afterwards: extraction neither depends on nor changes it.

    Args:
        supernet: an OFA MobileNetV3 supernet.
        subnet: a mobilenetv3 subnet (``ks``, ``e``, ``d``; canonical or compact form).

    Raises:
        SupernetError: the subnet is not valid for this supernet.
    """
    space = MobileNetV3Space(width_mult=supernet.width_mult)
    try:
        # The resolution plays no part in the weights; validate it where it is used.
        subnet = space.canonical({**subnet, "r": space.resolutions[0]})
    except ValueError as error:
        raise SupernetError(f"invalid subnet: {error}") from None
    with _active_subnet(supernet, subnet):
        network = supernet.get_active_subnet(preserve_weight=True)
    network.train(supernet.training)
    return network


def train_supernet(
    supernet: OFAMobileNetV3,
    data: DataSplits,
    *,
    epochs: int,
    out_path: str | Path,
    device: str | torch.device = "cpu",
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 0.02,
    momentum: float = 0.9,
    weight_decay: float = 3e-5,
    resolutions: tuple[int, ...] = (32,),
    n_random: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a supernet from scratch with the sandwich rule and in-place distillation.

    Each step trains the largest subnet on the labels, then the smallest and ``n_random``
    random subnets on the largest's soft predictions, and takes one SGD step on the summed
    gradients. The cosine learning rate changes once per epoch. A checkpoint is written
    atomically to ``out_path`` after every epoch; when ``out_path`` already holds one, training
    resumes after its last epoch and, since every epoch is seeded from ``(seed, epoch)``,
    ends with the same weights as an uninterrupted run.

    Args:
        supernet: the supernet, e.g. from :func:`build_supernet`.
        data: the dataset; its validation split scores the largest and smallest subnets.
        epochs: the total number of epochs, resumed ones included.
        out_path: the checkpoint file.
        device: where to train.
        seed: seeds subnet sampling, shuffling, augmentation and dropout.
        batch_size: images per step.
        lr: the initial learning rate; the gradients of all the step's subnets are summed, so
            it is lower than for one network (on digits 0.02 beat 0.005-0.1).
        momentum: SGD momentum.
        weight_decay: L2 penalty on weights (not on BN parameters and biases).
        resolutions: input resolutions subnets are trained at.
        n_random: random subnets per step besides the largest and smallest.
        progress: show a progress bar.

    Returns:
        ``epochs`` (done in total), ``trained_epochs`` (by this call), ``top1_largest`` and
        ``top1_smallest`` (validation accuracy in % after the last epoch) and
        ``seconds_per_epoch`` (training time of this call's epochs, validation excluded).

    Raises:
        SupernetError: ``out_path`` holds a checkpoint of another supernet.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if n_random < 0:
        raise ValueError(f"n_random must be zero or more, got {n_random}")
    out_path = Path(out_path)
    n_classes = supernet.classifier.linear.out_features
    if n_classes != data.n_classes:
        raise SupernetError(
            f"the supernet has {n_classes} outputs and the dataset {data.n_classes} classes"
        )
    space = MobileNetV3Space(width_mult=supernet.width_mult, resolutions=resolutions)
    largest, smallest = space.largest(), space.smallest()
    supernet.to(device)
    optimizer = torch.optim.SGD(
        _parameter_groups(supernet, weight_decay), lr=lr, momentum=momentum
    )

    history: list[dict[str, float]] = []
    if out_path.exists():
        history = _resume(out_path, supernet, optimizer, n_classes)
    start = len(history)
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    bar = tqdm(
        total=max(epochs - start, 0) * steps_per_epoch,
        desc="supernet",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    seconds = []
    for epoch in range(start, epochs):
        bar.set_description(f"supernet epoch {epoch + 1}/{epochs}")
        # A closed form instead of a scheduler: a resumed run needs no scheduler state.
        for group in optimizer.param_groups:
            group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * epoch / epochs))
        begin = time.perf_counter()
        loss = _train_epoch(
            supernet, data.train, optimizer, space, largest, smallest,
            n_random=n_random, batch_size=batch_size, device=device,
            seed=_epoch_seed(seed, epoch), bar=bar,
        )
        seconds.append(time.perf_counter() - begin)
        record = {
            "epoch": epoch + 1,
            "loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds[-1],
            "top1_largest": _validate(supernet, data, largest, device, seed),
            "top1_smallest": _validate(supernet, data, smallest, device, seed),
        }
        history.append(record)
        bar.set_postfix(loss=f"{loss:.3f}", top1=f"{record['top1_largest']:.1f}")
        _save_checkpoint(out_path, supernet, optimizer, history, seed=seed)
    bar.close()
    supernet.set_max_net()
    return {
        "epochs": len(history),
        "trained_epochs": len(seconds),
        "top1_largest": history[-1]["top1_largest"],
        "top1_smallest": history[-1]["top1_smallest"],
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
    }


def _train_epoch(
    supernet: OFAMobileNetV3,
    train: ImageSet,
    optimizer: torch.optim.Optimizer,
    space: MobileNetV3Space,
    largest: dict[str, Any],
    smallest: dict[str, Any],
    *,
    n_random: int,
    batch_size: int,
    device: str | torch.device,
    seed: int,
    bar: tqdm,
) -> float:
    """Run one sandwich-rule epoch and return its mean loss of the largest subnet."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    supernet.train()
    total = torch.zeros((), device=device)
    n_steps = 0
    with seeded(seed, device):
        batches = train.batches(
            batch_size, largest["r"], shuffle=True, augment=True, generator=generator, device=device
        )
        for images, labels in batches:
            bar.update()
            # Train-mode BN cannot normalise a single image at r=32 (1x1 final feature map).
            if len(labels) < 2:
                continue
            optimizer.zero_grad(set_to_none=True)
            _set_active(supernet, largest)
            teacher = supernet(images)
            loss = F.cross_entropy(teacher, labels)
            loss.backward()
            soft_targets = teacher.detach().softmax(dim=1)
            for subnet in [smallest, *space.sample(rng, n_random)]:
                _set_active(supernet, subnet)
                logits = supernet(_resize(images, subnet["r"]))
                # Soft cross-entropy (OFA's distillation loss): KL up to the teacher's entropy.
                distill = -(soft_targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
                distill.backward()
            optimizer.step()
            total += loss.detach()
            n_steps += 1
            # Reading the loss syncs with the device: only now and then, and only when shown.
            if not bar.disable and n_steps % _PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{total.item() / n_steps:.3f}")
    return total.item() / max(n_steps, 1)


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


def _set_active(supernet: OFAMobileNetV3, subnet: dict[str, Any]) -> None:
    # Always the full 20-slot lists: OFA zips them with blocks[1:], so a compact list would
    # put kernel sizes and expand ratios on the wrong blocks.
    supernet.set_active_subnet(ks=subnet["ks"], e=subnet["e"], d=subnet["d"])


@contextlib.contextmanager
def _active_subnet(supernet: OFAMobileNetV3, subnet: dict[str, Any]) -> Iterator[None]:
    """Activate a subnet, then restore the previously active one."""
    layers = [block.conv for block in supernet.blocks[1:]]
    kernels = [layer.active_kernel_size for layer in layers]
    expands = [layer.active_expand_ratio for layer in layers]
    depths = list(supernet.runtime_depth)
    _set_active(supernet, subnet)
    try:
        yield
    finally:
        supernet.set_active_subnet(ks=kernels, e=expands, d=depths)


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # As in OFA: no decay on BN parameters and biases (1-D tensors).
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.ndim > 1 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SupernetError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            # Foreign pickles trigger protocol warnings; the error below says it all.
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise SupernetError(f"{path}: cannot be read ({error.strerror or error})") from None
    except Exception as error:  # torch.load raises many types for corrupt files
        if "not an allowed global" in str(error):
            reason = "holds Python objects besides tensors; only weights-only checkpoints load"
        else:
            reason = "not a PyTorch checkpoint, or truncated or corrupt"
        raise SupernetError(f"{path}: {reason} ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise SupernetError(
            f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict with 'state_dict'"
        )
    return checkpoint


def _state_dict_of(path: Path, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, dict):
        raise SupernetError(f"{path}: the checkpoint dict has no 'state_dict' entry")
    bad = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise SupernetError(f"{path}: 'state_dict' holds a non-tensor entry {bad[0]!r}")
    return dict(state_dict)


def _rename_keys(
    path: Path, state_dict: dict[str, torch.Tensor], supernet: OFAMobileNetV3
) -> dict[str, torch.Tensor]:
    """Map the names of older OFA releases (``mobile_inverted_conv``, ``bn.bn``) to ours."""
    expected = supernet.state_dict().keys()
    renamed = {}
    for key, value in state_dict.items():
        key = key.replace(".mobile_inverted_conv.", ".conv.")
        candidates = [key] + [key.replace(old, new) for old, new in _LEGACY_NAMES if old in key]
        match = next((candidate for candidate in candidates if candidate in expected), None)
        if match is None:
            raise SupernetError(
                f"{path}: not an OFA MobileNetV3 supernet (unexpected weight {key!r})"
            )
        renamed[match] = value
    return renamed


def _check_state_dict(
    path: Path,
    state_dict: dict[str, torch.Tensor],
    supernet: OFAMobileNetV3,
    width_mult: float,
    optional: tuple[str, ...],
) -> None:
    expected = supernet.state_dict()
    missing = [
        key
        for key in expected
        if key not in state_dict and key not in optional and not key.endswith("num_batches_tracked")
    ]
    if missing:
        raise SupernetError(
            f"{path}: not a complete OFA MobileNetV3 d234_e346_k357 supernet "
            f"({len(missing)} weights missing, e.g. {missing[0]!r})"
        )
    mismatch = _shape_mismatch(state_dict, expected)
    if mismatch is None:
        return
    for other in WIDTH_MULTS:
        if other != float(width_mult):
            with torch.device("meta"):
                shapes = OFAMobileNetV3(
                    n_classes=supernet.classifier.linear.out_features,
                    width_mult=other,
                    ks_list=list(KERNEL_SIZES),
                    expand_ratio_list=list(EXPAND_RATIOS),
                    depth_list=list(DEPTHS),
                ).state_dict()
            if _shape_mismatch(state_dict, shapes) is None:
                raise SupernetError(
                    f"{path}: holds a width_mult={other} supernet, not {float(width_mult)}"
                )
    key, found, wanted = mismatch
    raise SupernetError(
        f"{path}: not an OFA MobileNetV3 d234_e346_k357 w{float(width_mult)} supernet "
        f"({key} has shape {list(found)}, expected {list(wanted)})"
    )


def _shape_mismatch(
    state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> tuple[str, torch.Size, torch.Size] | None:
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            return key, value.shape, expected[key].shape
    return None


def _resume(
    path: Path, supernet: OFAMobileNetV3, optimizer: torch.optim.Optimizer, n_classes: int
) -> list[dict[str, float]]:
    checkpoint = _read_checkpoint(path)
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
    nn.Module.load_state_dict(supernet, checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return list(checkpoint["history"])


def _save_checkpoint(
    path: Path,
    supernet: OFAMobileNetV3,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, float]],
    *,
    seed: int,
) -> None:
    """Write the checkpoint next to ``path``, then rename: a kill never leaves half a file."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": supernet.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": len(history),
        "history": history,
        "n_classes": supernet.classifier.linear.out_features,
        "width_mult": supernet.width_mult,
        "seed": seed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        torch.save(checkpoint, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
