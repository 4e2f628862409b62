"""OFA MobileNetV3 supernets: building, loading checkpoints and extracting subnets."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, KeysView
from pathlib import Path
from typing import Any

import torch
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from ofa.utils.layers import LinearLayer
from ofa.utils.my_modules import init_models
from torch import nn

from optnas.artifacts import load_checkpoint
from optnas.spaces.mobilenetv3 import (
    DEFAULT_WIDTH_MULT,
    DEPTHS,
    EXPAND_RATIOS,
    KERNEL_SIZES,
    WIDTH_MULTS,
    MobileNetV3Space,
    has_feature_mix,
)

# The format tag of optnas's own supernet training checkpoints.
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


class SupernetError(ValueError):
    """A supernet checkpoint or subnet that cannot be used; the message is one line for users."""


def build_supernet(
    n_classes: int, width_mult: float = DEFAULT_WIDTH_MULT, dropout_rate: float = 0.1, *, seed: int = 0
) -> OFAMobileNetV3:
    """Build an untrained OFA MobileNetV3 supernet (``ofa_mbv3_d234_e346_k357``).

    Below width 1.0 the head has no feature mix layer (see
    :func:`~optnas.spaces.mobilenetv3.has_feature_mix`): ``feature_mix_layer`` is an
    ``nn.Identity`` and the classifier reads the pooled final expand. The subnets extracted
    from it (:func:`extract_subnet`) have the same head.

    Args:
        n_classes: outputs of the classifier.
        width_mult: the width multiplier, one of
            :data:`~optnas.spaces.mobilenetv3.WIDTH_MULTS`.
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
        supernet = _ofa_supernet(n_classes, float(width_mult), dropout_rate)
        # OFA's from-scratch initialisation: He (fan-out) convolutions, unit BN scales.
        init_models(supernet, "he_fout")
    return supernet


def _ofa_supernet(n_classes: int, width_mult: float, dropout_rate: float = 0.1) -> OFAMobileNetV3:
    """The supernet's modules at a width, with the head :func:`has_feature_mix` gives it; not initialised."""
    supernet = OFAMobileNetV3(
        n_classes=n_classes,
        dropout_rate=dropout_rate,
        width_mult=width_mult,
        ks_list=list(KERNEL_SIZES),
        expand_ratio_list=list(EXPAND_RATIOS),
        depth_list=list(DEPTHS),
    )
    if not has_feature_mix(width_mult):
        # OFA's forward (and its extracted subnets') runs pooling -> feature mix -> flatten ->
        # classifier: an identity there leaves MCUNet's head, the classifier on the pooled
        # final expand.
        supernet.feature_mix_layer = nn.Identity()
        supernet.classifier = LinearLayer(
            supernet.final_expand_layer.out_channels, n_classes, dropout_rate=dropout_rate
        )
    return supernet


def zero_init_residuals(supernet: OFAMobileNetV3) -> None:
    """Zero the scale of the last batch normalization of every residual block's branch.

    Each residual block then starts as the identity, so a deep network trains like a shallow one
    at first (Goyal et al., 2017). On digits it took the largest subnet, trained alone, from
    90 % to 98 % validation top1 in 6 epochs, and every depth of the supernet starts from the
    same function.

    Args:
        supernet: an OFA MobileNetV3 supernet, changed in place.
    """
    for block in supernet.blocks:
        if block.shortcut is not None:
            for module in block.conv.point_linear.modules():
                if isinstance(module, nn.BatchNorm2d):
                    nn.init.zeros_(module.weight)


def load_supernet(
    path: str | Path,
    n_classes: int,
    width_mult: float = DEFAULT_WIDTH_MULT,
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
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") == CHECKPOINT_FORMAT:
        saved_width = float(checkpoint.get("width_mult", width_mult))
        if saved_width != float(width_mult):
            raise SupernetError(
                f"{path}: holds a width_mult={saved_width} supernet, not {float(width_mult)}"
            )
    supernet = build_supernet(n_classes, width_mult, seed=seed)
    saved = _state_dict_of(path, checkpoint)
    try:
        state_dict, messages = _matched_state_dict(path, saved, supernet, n_classes)
    except SupernetError:
        other = _width_of(path, saved, width_mult)
        if other is None:
            raise
        raise SupernetError(f"{path}: holds a width_mult={other} supernet, not {float(width_mult)}") from None
    nn.Module.load_state_dict(supernet, state_dict, strict=False)
    return supernet.to(device), messages


def _matched_state_dict(
    path: Path, saved: dict[str, torch.Tensor], supernet: OFAMobileNetV3, n_classes: int
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The saved weights under the supernet's names, checked complete and of its shapes, and the messages."""
    state_dict = _rename_keys(path, saved, supernet.state_dict().keys())
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
    _check_state_dict(path, state_dict, supernet, optional=optional)
    return state_dict, messages


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


def set_active(supernet: OFAMobileNetV3, subnet: dict[str, Any]) -> None:
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
    set_active(supernet, subnet)
    try:
        yield
    finally:
        supernet.set_active_subnet(ks=kernels, e=expands, d=depths)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read a supernet checkpoint dict (``weights_only=True``); :class:`SupernetError` if unusable.

    Args:
        path: the checkpoint file.
    """
    try:
        return load_checkpoint(path)
    except ValueError as error:
        raise SupernetError(str(error)) from None


def _state_dict_of(path: Path, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, dict):
        raise SupernetError(f"{path}: the checkpoint dict has no 'state_dict' entry")
    bad = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise SupernetError(f"{path}: 'state_dict' holds a non-tensor entry {bad[0]!r}")
    return dict(state_dict)


def _rename_keys(
    path: Path, state_dict: dict[str, torch.Tensor], expected: KeysView[str]
) -> dict[str, torch.Tensor]:
    """Map the names of older OFA releases (``mobile_inverted_conv``, ``bn.bn``) to ``expected`` ones."""
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
    if mismatch is not None:
        key, found, wanted = mismatch
        raise SupernetError(
            f"{path}: not an OFA MobileNetV3 d234_e346_k357 w{float(supernet.width_mult)} supernet "
            f"({key} has shape {list(found)}, expected {list(wanted)})"
        )


def _width_of(path: Path, saved: dict[str, torch.Tensor], width_mult: float) -> float | None:
    """The other width multiplier whose supernet has exactly the saved weights' names and shapes, if any.

    The classifier is left out: its class count is the task's, not the width's.
    """
    for other in WIDTH_MULTS:
        if other == float(width_mult):
            continue
        shapes = _weight_shapes(other)
        try:
            renamed = _rename_keys(path, saved, shapes.keys())
        except SupernetError:
            continue
        body = {key: value for key, value in renamed.items() if key not in _CLASSIFIER_KEYS}
        weights = [key for key in shapes if key not in _CLASSIFIER_KEYS and not key.endswith("num_batches_tracked")]
        if all(key in body for key in weights) and _shape_mismatch(body, shapes) is None:
            return other
    return None


@functools.cache
def _weight_shapes(width_mult: float) -> dict[str, torch.Tensor]:
    """The state dict of a supernet of a width, on the meta device (shapes, no data)."""
    with torch.device("meta"):
        return _ofa_supernet(1, width_mult).state_dict()


def _shape_mismatch(
    state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> tuple[str, torch.Size, torch.Size] | None:
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            return key, value.shape, expected[key].shape
    return None
