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
    as onnxruntime's ``quantize_static`` writes them. The feature mix convolution has
    neither batch normalization nor bias. Per-tensor activation scales and zero points (5
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

from typing import Any, NamedTuple

from optnas.networks.costs import (
    _SE,
    _canonical,
    _channels,
    _make_divisible,
    layers,
    profile,
    stage_outputs,
)
from optnas.networks.early_exits import head_layout
from optnas.spaces.eemobilenetv3 import backbone_subnet, exit_stages, is_early_exit

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
    heads = _head_tensors(subnet, n_classes) if is_early_exit(subnet) else []
    subnet = _canonical(backbone_subnet(subnet))
    channels = _channels(subnet["w"])
    stem, first = channels[:2]
    # The stem's 3x3 convolution, then the first block: depthwise 3x3 and projection, no expansion.
    tensors = [WeightTensor(3 * 9 * stem, stem, True), WeightTensor(stem * 9, stem, True),
               WeightTensor(stem * first, first, True)]
    for layer in layers(subnet):
        in_channels = channels[layer.stage + 1] if layer.first else channels[layer.stage + 2]
        out_channels = channels[layer.stage + 2]
        middle = _make_divisible(round(in_channels * layer.expand))
        tensors += [WeightTensor(in_channels * middle, middle, True),
                    WeightTensor(middle * layer.kernel * layer.kernel, middle, True)]
        if _SE[layer.stage]:
            squeezed = _make_divisible(middle // _SE_REDUCTION)
            tensors += [WeightTensor(middle * squeezed, squeezed, True), WeightTensor(squeezed * middle, middle, True)]
        tensors.append(WeightTensor(middle * out_channels, out_channels, True))
    last_stage, final_expand, last_channel = channels[-3:]
    tensors += [WeightTensor(last_stage * final_expand, final_expand, True),
                WeightTensor(final_expand * last_channel, last_channel, False),
                WeightTensor(last_channel * n_classes, n_classes, True)]
    return tensors + heads


def _heads(subnet: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """``(channels, size, pool, width)`` of each exit head of an eemobilenetv3 subnet, in order."""
    stages = stage_outputs(backbone_subnet(subnet))
    heads = []
    for stage in exit_stages(subnet):
        channels, size = stages[stage]["channels"], stages[stage]["size"]
        heads.append((channels, size, *head_layout(channels, size)))
    return heads


def _head_tensors(subnet: dict[str, Any], n_classes: int) -> list[WeightTensor]:
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
    if not is_early_exit(subnet):
        return 0
    peaks = [0]
    for channels, size, pool, width in _heads(subnet):
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
    tensors = weight_tensors(subnet, n_classes)
    biases = sum(t.channels for t in tensors if t.bias)
    flash = sum(t.weights * _INT8_WEIGHT_BYTES + t.channels * _CHANNEL_QUANT_BYTES for t in tensors)
    flash += biases * _INT8_BIAS_BYTES
    flash_float = (sum(t.weights for t in tensors) + biases) * _FLOAT_BYTES
    peak = max(round(profile(backbone_subnet(subnet), n_classes)["peak_activations"] * 1e6), head_peak(subnet))
    return {"flash_kb": flash / KB, "sram_kb": peak / KB, "flash_kb_float32": flash_float / KB,
            "sram_kb_float32": peak * _FLOAT_BYTES / KB}
