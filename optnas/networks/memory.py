"""Memory of a deployed mobilenetv3 subnet in the device's units, from its encoding.

A microcontroller holds the weights in flash and the activations in SRAM. Kilobytes here
are 1024 bytes, as boards state their memory ("320 KB SRAM, 1 MB flash").

``flash_kb``
    The weights as an int8 model in the QDQ format with per-channel weight quantization
    stores them, batch normalization folded into the preceding convolution: every
    convolution and the classifier keep their weights as int8 (1 byte each), a float32 scale
    and an int8 zero point per output channel (5 bytes), and, where the layer has a bias
    (a folded batch normalization, the squeeze-and-excitation convolutions, the classifier),
    an int32 bias per output channel with its float32 scale and int32 zero point (12 bytes),
    as onnxruntime's ``quantize_static`` writes them. The feature mix convolution (from
    width 1.0 on) has neither batch normalization nor bias. Per-tensor activation scales and zero points (5
    bytes per tensor) and the graph itself are not counted: ``flash_kb`` is within 0.1 % of
    the bytes of the int8 ONNX file's initializers, which are about 94 % of the file.
``flash_kb_float32``
    The same folded weights and biases at 4 bytes each, no scales.
``sram_kb``
    The peak activation memory at int8: ``peak_activations`` (see
    :mod:`optnas.networks.costs`) at 1 byte per element. Nothing is added for a working
    buffer: the model counts a layer's input and output alive together, and direct
    (im2col-free) convolution kernels, pointwise and depthwise alike, need nothing beyond
    them; a runtime that lowers convolutions to im2col needs more.
``sram_kb_float32``
    The same at 4 bytes per element.

An eemobilenetv3 network adds its exit heads: each head's 3x3 convolution (its batch
normalization folded) and linear layer count in ``flash_kb`` like the backbone's layers, and
a head's working set joins the SRAM peak: while a head runs, the stage output it reads stays
alive (the backbone goes on from it when the head does not fire), together with the max
pooled copy (where the head pools) and the convolution's output; the head's later tensors
(the pooled vector and the logits) are smaller than that output and run after it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from optnas.networks.costs import (
    _SE,
    Layer,
    _channels,
    _make_divisible,
    gather_parts,
    layers,
    mobilenetv3_subnet,
    part_tables,
    profile,
    slot_genes,
    stage_outputs,
)
from optnas.networks.exit_costs import head_layout
from optnas.spaces import Subnet
from optnas.spaces.mobilenetv3 import MobileNetV3Space, has_feature_mix

KB = 1024
_INT8_WEIGHT_BYTES = 1
_CHANNEL_QUANT_BYTES = 4 + 1  # float32 scale, int8 zero point
# onnxruntime's QDQ format quantizes a bias to int32 with its own float32 scale and int32 zero point.
_INT8_BIAS_BYTES = 4 + 4 + 4
_FLOAT_BYTES = 4
_SE_REDUCTION = 4


class WeightTensor(NamedTuple):
    """A convolution or linear layer as it is deployed: weight elements, output channels, bias."""

    weights: int
    channels: int
    bias: bool


def weight_tensors(subnet: dict[str, Any], n_classes: int) -> list[WeightTensor]:
    """Return every convolution and linear layer of a subnet, batch normalization folded.

    Args:
        subnet: a mobilenetv3 or eemobilenetv3 subnet holding its resolution ``r``; the
            exit heads of the latter follow the backbone's layers.
        n_classes: outputs of the classifier.
    """
    subnet = mobilenetv3_subnet(subnet)
    width = subnet["w"]
    tensors = _stem_tensors(width)
    for layer in layers(subnet):
        tensors += _layer_tensors(width, layer)
    return tensors + _final_tensors(width, n_classes) + _head_tensors(subnet, n_classes)


def _stem_tensors(width: float) -> list[WeightTensor]:
    stem, first = _channels(width)[:2]
    # The stem's 3x3 convolution, then the first block: depthwise 3x3 and projection, no expansion.
    return [WeightTensor(3 * 9 * stem, stem, True), WeightTensor(stem * 9, stem, True),
            WeightTensor(stem * first, first, True)]


def _layer_tensors(width: float, layer: Layer) -> list[WeightTensor]:
    channels = _channels(width)
    in_channels = channels[layer.stage + 1] if layer.first else channels[layer.stage + 2]
    out_channels = channels[layer.stage + 2]
    middle = _make_divisible(round(in_channels * layer.expand))
    tensors = [WeightTensor(in_channels * middle, middle, True),
               WeightTensor(middle * layer.kernel * layer.kernel, middle, True)]
    if _SE[layer.stage]:
        squeezed = _make_divisible(middle // _SE_REDUCTION)
        tensors += [WeightTensor(middle * squeezed, squeezed, True), WeightTensor(squeezed * middle, middle, True)]
    tensors.append(WeightTensor(middle * out_channels, out_channels, True))
    return tensors


def _final_tensors(width: float, n_classes: int) -> list[WeightTensor]:
    """The final expand, the feature mix (no bias; only where :func:`has_feature_mix`) and the classifier."""
    last_stage, final_expand, last_channel = _channels(width)[-3:]
    tensors = [WeightTensor(last_stage * final_expand, final_expand, True)]
    features = final_expand
    if has_feature_mix(width):
        tensors.append(WeightTensor(final_expand * last_channel, last_channel, False))
        features = last_channel
    return [*tensors, WeightTensor(features * n_classes, n_classes, True)]


def _flash_bytes(tensors: list[WeightTensor]) -> tuple[int, int]:
    """Bytes of some weight tensors as int8 (with their scales and int32 biases) and as float32."""
    biases = sum(t.channels for t in tensors if t.bias)
    flash = sum(t.weights * _INT8_WEIGHT_BYTES + t.channels * _CHANNEL_QUANT_BYTES for t in tensors)
    flash += biases * _INT8_BIAS_BYTES
    return flash, (sum(t.weights for t in tensors) + biases) * _FLOAT_BYTES


def _heads(subnet: Subnet) -> list[tuple[int, int, int, int]]:
    """``(channels, size, pool, width)`` of each exit head of a canonical subnet, in order (none without exits)."""
    if not subnet.has_exits:
        return []
    stages = stage_outputs(subnet)
    heads = []
    for stage in subnet.exit_stages:
        channels, size = stages[stage]["channels"], stages[stage]["size"]
        heads.append((channels, size, *head_layout(channels, size)))
    return heads


def _head_tensors(subnet: Subnet, n_classes: int) -> list[WeightTensor]:
    tensors = []
    for channels, _, _, width in _heads(subnet):
        # The confidence is one more output of the linear layer.
        tensors += [WeightTensor(channels * width * 9, width, True),
                    WeightTensor(width * (n_classes + 1), n_classes + 1, True)]
    return tensors


def head_peak(subnet: dict[str, Any]) -> int:
    """Return the largest working set, in elements, of an eemobilenetv3 subnet's exit heads (0 without).

    Args:
        subnet: a mobilenetv3 or eemobilenetv3 subnet holding its resolution ``r``.
    """
    peaks = [0]
    for channels, size, pool, width in _heads(mobilenetv3_subnet(subnet)):
        side = size // pool
        pooled = channels * side * side if pool > 1 else 0
        peaks.append(channels * size * size + pooled + width * side * side)
    return max(peaks)


def memory(subnet: dict[str, Any], n_classes: int) -> dict[str, float]:
    """Return ``flash_kb``, ``sram_kb`` and their float32 equivalents (see the module docstring).

    Args:
        subnet: a mobilenetv3 or eemobilenetv3 subnet holding its resolution ``r``.
        n_classes: outputs of the classifier.
    """
    subnet = mobilenetv3_subnet(subnet)
    flash, flash_float = _flash_bytes(weight_tensors(subnet, n_classes))
    peak = max(round(profile(subnet, n_classes)["peak_activations"] * 1e6), head_peak(subnet))
    return _memory_figures(flash, flash_float, peak)


def memory_vectors(
    space: MobileNetV3Space, n_classes: int
) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """Return :func:`memory` for whole arrays of gene vectors of a space, with the same figures.

    The flash of every part (stem, each slot's layer choices, head) is tabulated once here.

    Args:
        space: a mobilenetv3 space (not an early-exit one: its exit heads are not modelled).
        n_classes: outputs of the classifier.

    Returns:
        A function of an int array (n, n_genes) of gene vectors and their
        ``peak_activations`` (from :func:`~optnas.networks.costs.profile_vectors`, which the
        caller computes anyway) giving ``flash_kb``, ``sram_kb`` and their float32
        equivalents, each an array (n,).
    """
    tables = part_tables(space, lambda width, _: _flash_bytes(_stem_tensors(width)),
                         lambda width, layer: _flash_bytes(_layer_tensors(width, layer)),
                         lambda width, _: _flash_bytes(_final_tensors(width, n_classes)))

    def figures(vectors: np.ndarray, peak_activations: np.ndarray) -> dict[str, np.ndarray]:
        flash, flash_float = gather_parts(tables, slot_genes(space, vectors)).sum(axis=1)
        return _memory_figures(flash, flash_float, np.round(peak_activations * 1e6))

    return figures


def _memory_figures(flash: Any, flash_float: Any, peak: Any) -> dict[str, Any]:
    """The figures of :func:`memory` from bytes of weights and the peak in elements (numbers or arrays)."""
    return {"flash_kb": flash / KB, "sram_kb": peak / KB, "flash_kb_float32": flash_float / KB,
            "sram_kb_float32": peak * _FLOAT_BYTES / KB}
