"""Fully-int8 TFLite flatbuffers of MobileNetV3 networks, written by optnas itself (no TensorFlow).

:func:`convert_int8` reads the static OFA MobileNetV3 network of a chosen architecture module by
module into a float graph of the operators TFLite Micro runs, checks that graph against the
network's own output, calibrates every activation's range on images, and writes the
int8 graph with the object API of the schema that ships with ``tflite-micro``
(``schema_py_generated``: ``ModelT``, ``SubGraphT``, ...), packed by ``flatbuffers.Builder``.

The graph is fixed by the architecture, so that a memory model can predict the file and TFLM's
arena without building it: NHWC, batch 1; activations int8 per tensor (min/max widened to
include 0; an h-swish input's starts at -3 at the lowest, below which h-swish is 0); weights
int8 symmetric per output channel, batch norm folded; an int32 bias for every convolution
(zero where the layer has none); a stride-2 convolution on an even size is a PAD
(bottom/right one less than top/left, the pad value the input's zero point) and a VALID
convolution, every other convolution SAME, which then equals PyTorch's symmetric padding;
ReLU and ReLU6 fused, h-swish a HARD_SWISH op; squeeze-and-excitation is MEAN, a 1x1
convolution with fused ReLU, and a 1x1 convolution whose weights and bias are ``w/6`` and
``(b+3)/6`` and whose output is quantized with scale 1/255 and zero point -128, so that int8
saturation computes h-sigmoid's clamp to [0, 1] (TFLM has no RELU_0_TO_1), then MUL;
residuals are ADD; the head is MEAN, the feature-mix convolution and HARD_SWISH when the
network has one, and FULLY_CONNECTED (weights int8 per tensor). Tensors have no names and
every operator code version 1 (TFLM ignores both); constant buffers are 16-byte aligned.

A module the graph has no operator for is an :class:`UnsupportedModuleError` naming it, before
anything is written; so is an early-exit network (not exported to TFLite yet).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ofa.imagenet_classification.networks.mobilenet_v3 import MobileNetV3
from ofa.utils.layers import ConvLayer, IdentityLayer, LinearLayer, MBConvLayer, My2DLayer, ResidualBlock
from ofa.utils.pytorch_modules import Hsigmoid, Hswish, MyGlobalAvgPool2d, SEModule
from torch import nn

from optnas.networks.early_exits import EarlyExitNetwork
from optnas.networks.tflm import import_tflite_micro

# The builtin operators of the graph, the only ones a device has to register.
ALLOWED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "HARD_SWISH", "MEAN", "MUL", "ADD", "FULLY_CONNECTED")
# Modules whose forward runs their children in order.
_SEQUENCES = (nn.Sequential, ConvLayer, IdentityLayer, MBConvLayer)
# The SE gate's output: int8 saturation to [-128, 127] is the clamp to [0, 1].
_GATE_SCALE, _GATE_ZERO_POINT = 1.0 / 255.0, -128
_INT32 = np.iinfo(np.int32)
_BUFFER_ALIGNMENT = 16
_CALIBRATION_BATCH = 64
# h-swish is 0 below -3: where its input's range starts (see _calibrate).
_HSWISH_FLOOR = -3.0


class UnsupportedModuleError(ValueError):
    """A module or setting that the int8 TFLite graph has no operator for; one line naming it."""


@dataclass(frozen=True)
class TFLiteModel:
    """An int8 TFLite flatbuffer and what a caller needs to feed it and read it.

    Args:
        flatbuffer: the ``.tflite`` file's bytes.
        ops: the builtin operator of every node, in execution order (names of ``BuiltinOperator``).
        input_scale: the int8 input's scale: ``q = round(x / input_scale) + input_zero_point``
            for a normalised image ``x`` in NHWC.
        input_zero_point: the int8 input's zero point.
        output_scale: the int8 logits' scale: ``logit = (q - output_zero_point) * output_scale``.
        output_zero_point: the int8 logits' zero point.
        input_shape: the input's shape, ``(1, r, r, 3)``.
        output_shape: the output's shape, ``(1, classes)``.
    """

    flatbuffer: bytes
    ops: list[str]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


@dataclass
class _Op:
    """One node of the float graph; node ``i`` produces tensor ``i + 1`` (tensor 0 is the input).

    ``kind`` is conv, hswish, mean, mul, add or fc. A conv's ``activation`` is NONE, RELU, RELU6
    (fused) or GATE (the SE gate: clamped to [0, 1] by its output's quantization).
    """

    kind: str
    inputs: tuple[int, ...]
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: int = 1
    depthwise: bool = False
    activation: str = "NONE"


class _Reader:
    """Reads an OFA static MobileNetV3 into a float graph of :class:`_Op`, refusing what it does not know.

    Args:
        network: the network (eval mode).
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.names = {id(module): name for name, module in network.named_modules()}
        self.ops: list[_Op] = []

    def read(self) -> list[_Op]:
        """Return the graph of the whole network, from image (tensor 0) to logits (the last node)."""
        network = self.network
        if isinstance(network, EarlyExitNetwork):
            raise UnsupportedModuleError("early-exit (eemobilenetv3) networks are not exported to TFLite yet "
                                         "(--format onnx --int8 exports them)")
        if not isinstance(network, MobileNetV3):
            raise UnsupportedModuleError(f"cannot write a {type(network).__name__} as TFLite: "
                                         "only OFA MobileNetV3 networks are supported")
        x = self.sequence(network.first_conv, 0)
        for block in network.blocks:
            x = self.block(block, x)
        x = self.sequence(network.final_expand_layer, x)
        x = self.pool(network.global_avg_pool, x)
        # Narrow networks have no feature mix (an nn.Identity or None).
        x = self.sequence(network.feature_mix_layer, x)
        self.classifier(network.classifier, x)
        return self.ops

    def unsupported(self, module: nn.Module, why: str = "no int8 TFLite operator for it") -> UnsupportedModuleError:
        name = self.names.get(id(module), "?") or "the network"
        return UnsupportedModuleError(f"cannot convert {name} ({type(module).__name__}) to int8 TFLite: {why}")

    def add(self, op: _Op) -> int:
        self.ops.append(op)
        return len(self.ops)

    def sequence(self, module: nn.Module | None, x: int) -> int:
        if module is None or type(module) is nn.Identity:
            return x
        if type(module) not in _SEQUENCES:
            raise self.unsupported(module)
        if isinstance(module, My2DLayer) and module.ops_order != "weight_bn_act":
            raise self.unsupported(module, f"ops order {module.ops_order}")
        for child in module.children():
            x = self.layer(child, x)
        return x

    def layer(self, module: nn.Module, x: int) -> int:
        kind = type(module)
        if kind is nn.Conv2d:
            return self.conv(module, x)
        if kind is nn.BatchNorm2d:
            return self.batch_norm(module, x)
        if kind in (nn.ReLU, nn.ReLU6):
            return self.fuse(module, x, "RELU" if kind is nn.ReLU else "RELU6")
        if kind in (Hswish, nn.Hardswish):
            return self.add(_Op("hswish", (x,)))
        if kind is SEModule:
            return self.squeeze_excite(module, x)
        if kind in (nn.Dropout, nn.Dropout2d):  # the identity in eval mode
            return x
        if kind in _SEQUENCES:
            return self.sequence(module, x)
        raise self.unsupported(module)

    def conv(self, conv: nn.Conv2d, x: int) -> int:
        k = conv.kernel_size[0]
        stride = conv.stride[0]
        depthwise = conv.groups > 1
        problems = [
            (conv.kernel_size != (k, k) or k % 2 == 0, f"kernel {conv.kernel_size}"),
            (conv.stride != (stride, stride) or stride not in (1, 2), f"stride {conv.stride}"),
            (conv.padding != (k // 2, k // 2) or conv.padding_mode != "zeros", f"padding {conv.padding}"),
            (conv.dilation != (1, 1), f"dilation {conv.dilation}"),
            (depthwise and not conv.groups == conv.in_channels == conv.out_channels, f"groups {conv.groups}"),
        ]
        for problem, what in problems:
            if problem:
                raise self.unsupported(conv, f"{what} (SAME-padded convolutions only, stride 1 or 2, "
                                             "plain or depthwise)")
        weight = conv.weight.detach().float().cpu()
        bias = conv.bias.detach().float().cpu() if conv.bias is not None else torch.zeros(conv.out_channels)
        return self.add(_Op("conv", (x,), weight, bias, stride, depthwise))

    def batch_norm(self, norm: nn.BatchNorm2d, x: int) -> int:
        last = self.ops[-1] if self.ops and x == len(self.ops) else None
        if last is None or last.kind != "conv" or last.activation != "NONE" or norm.running_var is None:
            raise self.unsupported(norm, "batch norm is folded into the convolution right before it only")
        scale = (norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)).float().cpu()
        last.weight = last.weight * scale.view(-1, 1, 1, 1)
        last.bias = (last.bias - norm.running_mean.float().cpu()) * scale + norm.bias.detach().float().cpu()
        return x

    def fuse(self, module: nn.Module, x: int, activation: str) -> int:
        last = self.ops[-1] if self.ops and x == len(self.ops) else None
        if last is None or last.kind != "conv" or last.activation != "NONE":
            raise self.unsupported(module, "activations are fused into the convolution right before them only")
        last.activation = activation
        return x

    def squeeze_excite(self, se: SEModule, x: int) -> int:
        layers = list(se.fc.children())
        kinds = [type(layer) for layer in layers]
        if kinds != [nn.Conv2d, nn.ReLU, nn.Conv2d, Hsigmoid] or layers[0].bias is None or layers[2].bias is None:
            raise self.unsupported(se, "squeeze-and-excitation is reduce conv, ReLU, expand conv, h-sigmoid only")
        pooled = self.add(_Op("mean", (x,)))
        reduced = self.fuse(layers[1], self.conv(layers[0], pooled), "RELU")
        gate = self.conv(layers[2], reduced)
        # relu6(z + 3) / 6 = clamp((z + 3) / 6, 0, 1): the clamp is the output's int8 range.
        expand = self.ops[gate - 1]
        expand.weight, expand.bias, expand.activation = expand.weight / 6.0, (expand.bias + 3.0) / 6.0, "GATE"
        return self.add(_Op("mul", (x, gate)))

    def block(self, block: nn.Module, x: int) -> int:
        if type(block) is not ResidualBlock:
            raise self.unsupported(block)
        if block.conv is None:
            return x
        y = self.sequence(block.conv, x)
        shortcut = block.shortcut
        if shortcut is None:
            return y
        if type(shortcut) is not IdentityLayer or list(shortcut.children()):
            raise self.unsupported(shortcut, "residual shortcuts are identities only")
        return self.add(_Op("add", (x, y)))

    def pool(self, pool: nn.Module, x: int) -> int:
        global_pool = (type(pool) is MyGlobalAvgPool2d and pool.keep_dim) or (
            type(pool) is nn.AdaptiveAvgPool2d and pool.output_size in (1, (1, 1)))
        if not global_pool:
            raise self.unsupported(pool, "global average pooling keeping its dimensions only")
        return self.add(_Op("mean", (x,)))

    def classifier(self, classifier: nn.Module, x: int) -> int:
        if type(classifier) is LinearLayer:
            children = dict(classifier.named_children())
            if set(children) - {"dropout", "linear"}:
                raise self.unsupported(classifier, "a classifier is dropout and a linear layer only")
            linear = children["linear"]
        else:
            linear = classifier
        if type(linear) is not nn.Linear:
            raise self.unsupported(linear)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(linear.out_features)
        return self.add(_Op("fc", (x,), linear.weight.detach().float().cpu(), bias.cpu()))


def _run_float(ops: list[_Op], image: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """Run the float graph on a batch of NCHW images, yielding every tensor as it is computed.

    Tensors are dropped after their last use, so large batches at high resolutions fit.
    """
    last_use = {index: position for position, op in enumerate(ops) for index in op.inputs}
    values = {0: image}
    yield 0, image
    for position, op in enumerate(ops):
        inputs = [values[index] for index in op.inputs]
        x = inputs[0]
        if op.kind == "conv":
            k = op.weight.shape[-1]
            y = F.conv2d(x, op.weight, op.bias, op.stride, k // 2, groups=x.shape[1] if op.depthwise else 1)
            y = {"NONE": y, "RELU": F.relu(y), "RELU6": F.relu6(y), "GATE": y.clamp(0.0, 1.0)}[op.activation]
        elif op.kind == "hswish":
            y = F.hardswish(x)
        elif op.kind == "mean":
            y = x.mean((2, 3), keepdim=True)
        elif op.kind == "mul":
            y = x * inputs[1]
        elif op.kind == "add":
            y = x + inputs[1]
        else:
            y = F.linear(x.flatten(1), op.weight, op.bias)
        for index in op.inputs:
            if last_use[index] == position:
                del values[index]
        values[position + 1] = y
        yield position + 1, y


def _calibrate(network: nn.Module, ops: list[_Op], calibration: torch.Tensor) -> np.ndarray:
    """Return every tensor's int8 range over the calibration images, checking the graph's logits.

    The range is the tensor's min/max, except that a tensor read only by h-swish starts at -3
    at the lowest: h-swish is 0 for every input below -3, so a lower range changes no output
    and only coarsens the step of all other values.

    Raises:
        UnsupportedModuleError: the graph read from the modules computes other logits than the
            network's forward (a forward that does more than its modules say).
    """
    ranges = np.zeros((len(ops) + 1, 2))
    ranges[:, 0], ranges[:, 1] = np.inf, -np.inf
    difference = scale = 0.0
    device = next(network.parameters()).device
    with torch.no_grad():
        for start in range(0, len(calibration), _CALIBRATION_BATCH):
            batch = calibration[start : start + _CALIBRATION_BATCH].float()
            for index, value in _run_float(ops, batch):
                ranges[index] = min(ranges[index, 0], float(value.min())), max(ranges[index, 1], float(value.max()))
            expected = network(batch.to(device)).float().cpu()
            difference = max(difference, float((value - expected).abs().max()))
            scale = max(scale, float(expected.abs().max()))
    if not difference <= 1e-3 * (1.0 + scale):
        raise UnsupportedModuleError(
            f"cannot convert {type(network).__name__} to int8 TFLite: its forward computes other logits than its "
            f"modules read as MobileNetV3 layers (max difference {difference:.3g})")
    readers: dict[int, set[str]] = {}
    for op in ops:
        for index in op.inputs:
            readers.setdefault(index, set()).add(op.kind)
    for index, kinds in readers.items():
        if kinds == {"hswish"}:
            ranges[index, 0] = max(ranges[index, 0], _HSWISH_FLOOR)
    return ranges


def _activation_params(low: float, high: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) of a range, widened to include 0 so that 0 is exact."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / 255.0
    zero_point = int(np.clip(round(-128 - low / scale), -128, 127))
    return scale, zero_point


class _Writer:
    """Builds the subgraph's tensors, buffers and operators, then packs the model.

    Args:
        schema: ``schema_py_generated`` of tflite-micro.
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty one of every activation
        self.operators: list[Any] = []
        self.codes: dict[str, int] = {}
        self.ops: list[str] = []

    def activation(self, shape: tuple[int, ...], scale: float, zero_point: int) -> int:
        """Add an int8 activation tensor (planned in the arena); return its index."""
        return self._tensor(shape, self.schema.TensorType.INT8, 0, [scale], [zero_point], 0)

    def constant(self, array: np.ndarray, scales: list[float] | None = None, axis: int = 0) -> int:
        """Add a constant tensor (int8 or int32, symmetric when ``scales`` are given); return its index."""
        types = {np.dtype(np.int8): self.schema.TensorType.INT8, np.dtype(np.int32): self.schema.TensorType.INT32}
        self.buffers.append(_aligned_buffer(self.schema, np.ascontiguousarray(array).tobytes()))
        zero_points = [0] * len(scales) if scales is not None else None
        return self._tensor(array.shape, types[array.dtype], len(self.buffers) - 1, scales, zero_points, axis)

    def _tensor(self, shape: tuple[int, ...], kind: int, buffer: int, scales: list[float] | None,
                zero_points: list[int] | None, axis: int) -> int:
        tensor = self.schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer = [int(size) for size in shape], kind, buffer
        if scales is not None:
            quantization = self.schema.QuantizationParametersT()
            quantization.scale, quantization.zeroPoint = [float(s) for s in scales], [int(z) for z in zero_points]
            quantization.quantizedDimension = axis
            tensor.quantization = quantization
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def operator(self, name: str, inputs: list[int], output: int, options: Any = None) -> None:
        """Add an operator of builtin ``name`` (with its ``*OptionsT`` object, if any)."""
        self.codes.setdefault(name, len(self.codes))
        operator = self.schema.OperatorT()
        operator.opcodeIndex, operator.inputs, operator.outputs = self.codes[name], inputs, [output]
        if options is not None:
            operator.builtinOptionsType = getattr(self.schema.BuiltinOptions, type(options).__name__[:-1])
            operator.builtinOptions = options
        self.operators.append(operator)
        self.ops.append(name)

    def finish(self, input_index: int, output_index: int) -> bytes:
        """Pack the model (one subgraph) into flatbuffer bytes."""
        import flatbuffers

        schema = self.schema
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.operators = self.tensors, self.operators
        subgraph.inputs, subgraph.outputs = [input_index], [output_index]
        model = schema.ModelT()
        model.version, model.description, model.subgraphs, model.buffers = 3, "optnas int8", [subgraph], self.buffers
        model.operatorCodes = []
        for name in self.codes:  # in index order
            code = schema.OperatorCodeT()
            code.builtinCode = getattr(schema.BuiltinOperator, name)
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)  # the int8 field of old readers
            model.operatorCodes.append(code)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _aligned_buffer(schema: Any, data: bytes) -> Any:
    """A ``BufferT`` whose bytes start on a 16-byte boundary (int32 biases read in place on a device)."""

    class AlignedBuffer(schema.BufferT):
        def Pack(self, builder: Any) -> int:
            builder.StartVector(1, len(data), _BUFFER_ALIGNMENT)
            builder.head -= len(data)
            builder.Bytes[builder.head : builder.head + len(data)] = data
            vector = builder.EndVector()
            schema.BufferStart(builder)
            schema.BufferAddData(builder, vector)
            return schema.BufferEnd(builder)

    return AlignedBuffer()


def _quantize_weights(
    op: _Op, input_scale: float, per_channel: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Quantize an op's weight (output channels first) symmetrically to int8, and its bias to int32.

    Per output channel, or one scale for the whole tensor. A channel of zeros (e.g. a residual
    branch whose last BN scale is 0) takes the layer's largest scale; a scale is raised where
    the bias would overflow int32.

    Returns:
        the int8 weight, the int32 bias (scale ``input_scale * weight scale``) and the weight scales.
    """
    weight, bias = op.weight.numpy().astype(np.float64), op.bias.numpy().astype(np.float64)
    rows = weight.reshape(len(weight), -1) if per_channel else weight.reshape(1, -1)
    largest = np.abs(rows).max(axis=1) / 127.0
    scales = np.where(largest > 0, largest, largest.max() if largest.max() > 0 else 1.0)
    limit = np.abs(bias) / (input_scale * _INT32.max)
    scales = np.maximum(scales, limit if per_channel else limit.max(initial=0.0))
    shape = (-1,) + (1,) * (weight.ndim - 1)
    q_weight = np.clip(np.round(weight / scales.reshape(shape)), -127, 127).astype(np.int8)
    q_bias = np.clip(np.round(bias / (input_scale * scales)), _INT32.min, _INT32.max).astype(np.int32)
    return q_weight, q_bias, [float(scale) for scale in scales]


def _emit(ops: list[_Op], ranges: np.ndarray, resolution: int, schema: Any) -> TFLiteModel:
    """Write the int8 graph of the float one, with the calibrated ranges; see the module's doc."""
    writer = _Writer(schema)
    # Per float tensor: its tflite tensor, (scale, zero point) and NHWC shape.
    params = [_activation_params(*ranges[0])]
    shapes = [(1, resolution, resolution, 3)]
    tensors = [writer.activation(shapes[0], *params[0])]
    for position, op in enumerate(ops):
        source, (in_scale, in_zero_point), shape = tensors[op.inputs[0]], params[op.inputs[0]], shapes[op.inputs[0]]
        if op.kind == "conv":
            out_shape, name, inputs, options = _conv(writer, op, source, shape, in_scale, in_zero_point)
        elif op.kind == "fc":
            q_weight, q_bias, scales = _quantize_weights(op, in_scale, per_channel=False)
            out_shape, name, options = (1, len(q_weight)), "FULLY_CONNECTED", schema.FullyConnectedOptionsT()
            options.keepNumDims = False  # [1, 1, 1, L] in, [1, classes] out
            inputs = [source, writer.constant(q_weight, scales), writer.constant(q_bias, [in_scale * scales[0]])]
        elif op.kind == "mean":
            out_shape, name, options = (1, 1, 1, shape[3]), "MEAN", schema.ReducerOptionsT()
            options.keepDims = True
            inputs = [source, writer.constant(np.array([1, 2], np.int32))]
        elif op.kind == "hswish":
            out_shape, name, inputs, options = shape, "HARD_SWISH", [source], schema.HardSwishOptionsT()
        else:
            options = schema.MulOptionsT() if op.kind == "mul" else schema.AddOptionsT()
            out_shape, name, inputs = shape, op.kind.upper(), [tensors[index] for index in op.inputs]
        out_params = (_GATE_SCALE, _GATE_ZERO_POINT) if op.activation == "GATE" else _activation_params(
            *ranges[position + 1])
        output = writer.activation(out_shape, *out_params)
        writer.operator(name, inputs, output, options)
        params.append(out_params)
        shapes.append(out_shape)
        tensors.append(output)
    flatbuffer = writer.finish(tensors[0], tensors[-1])
    return TFLiteModel(flatbuffer, writer.ops, params[0][0], params[0][1], params[-1][0], params[-1][1],
                       shapes[0], shapes[-1])


def _conv(
    writer: _Writer, op: _Op, source: int, shape: tuple[int, ...], in_scale: float, in_zero_point: int,
) -> tuple[tuple[int, ...], str, list[int], Any]:
    """Write a convolution's constants, and the PAD before it where PyTorch pads asymmetrically for TFLite.

    Returns:
        the output's shape, the operator's name, its inputs and its options.
    """
    schema = writer.schema
    _, height, width, channels = shape
    k = op.weight.shape[-1]
    pad = k // 2
    # SAME pads bottom/right more than top/left when the padding is odd (stride 2, even size);
    # PyTorch pads both sides alike, so such a convolution is an explicit PAD and VALID.
    padded = op.stride == 2 and pad > 0 and (height % 2 == 0 or width % 2 == 0)
    if padded:
        paddings = np.array([[0, 0], [pad, pad - 1 + height % 2], [pad, pad - 1 + width % 2], [0, 0]], np.int32)
        shape = (1, height + int(paddings[1].sum()), width + int(paddings[2].sum()), channels)
        pad_output = writer.activation(shape, in_scale, in_zero_point)  # the pad value is the zero point: 0.0
        writer.operator("PAD", [source, writer.constant(paddings)], pad_output, schema.PadOptionsT())
        source = pad_output
        out_height, out_width = (shape[1] - k) // 2 + 1, (shape[2] - k) // 2 + 1
    else:
        out_height, out_width = -(-height // op.stride), -(-width // op.stride)
    q_weight, q_bias, scales = _quantize_weights(op, in_scale)
    # GATE is no activation: the output's int8 range clamps it.
    fused = getattr(schema.ActivationFunctionType, op.activation if op.activation in ("RELU", "RELU6") else "NONE")
    padding = schema.Padding.VALID if padded else schema.Padding.SAME
    if op.depthwise:
        # [C, 1, k, k] -> [1, k, k, C], quantized along the last axis.
        filters = writer.constant(q_weight[:, 0].transpose(1, 2, 0)[None], scales, axis=3)
        options = schema.DepthwiseConv2DOptionsT()
        options.depthMultiplier = 1
        name = "DEPTHWISE_CONV_2D"
    else:
        filters = writer.constant(q_weight.transpose(0, 2, 3, 1), scales)  # [O, I, k, k] -> [O, k, k, I]
        options = schema.Conv2DOptionsT()
        name = "CONV_2D"
    options.padding, options.strideH, options.strideW, options.fusedActivationFunction = (
        padding, op.stride, op.stride, fused)
    biases = writer.constant(q_bias, [in_scale * s for s in scales])
    return (1, out_height, out_width, len(q_weight)), name, [source, filters, biases], options


def convert_int8(network: nn.Module, calibration: torch.Tensor) -> TFLiteModel:
    """Write a MobileNetV3 network as a fully-int8 TFLite flatbuffer for TFLite Micro.

    Args:
        network: the static OFA MobileNetV3 of a chosen architecture
            (:func:`optnas.networks.standalone.load_chosen_network`); run in eval mode here and
            left in the mode it was in.
        calibration: N×3×r×r normalised float images (N >= 1; r the network's resolution) whose
            min/max set every activation's int8 range (an h-swish input's floored at -3).

    Returns:
        the flatbuffer, its operators and its input and output quantization.

    Raises:
        UnsupportedModuleError: a module, setting or network the graph cannot express (nothing
            is written).
        ValueError: no calibration image, or images that are not N×3×r×r.
    """
    if calibration.ndim != 4 or calibration.shape[1] != 3 or calibration.shape[2] != calibration.shape[3]:
        raise ValueError(f"calibration images must be N x 3 x r x r, got {tuple(calibration.shape)}")
    if len(calibration) < 1:
        raise ValueError("int8 TFLite conversion needs at least one calibration image")
    ops = _Reader(network).read()
    schema = import_tflite_micro("tensorflow.lite.micro.python.schema_py_generated")
    mode = network.training
    network.eval()
    try:
        ranges = _calibrate(network, ops, calibration.detach().cpu())
    finally:
        network.train(mode)
    return _emit(ops, ranges, int(calibration.shape[-1]), schema)
