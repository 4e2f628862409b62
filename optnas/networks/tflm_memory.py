"""TensorFlow Lite for Microcontrollers' arena and the ``.tflite`` file of a mobilenetv3 subnet, from its encoding.

No network is built and no torch is imported: the int8 graph that optnas writes
(``optnas.networks.tflite``: NHWC, int8 activations, per-channel int8 weights, an int32 bias
for every convolution, a PAD op before every stride-2 convolution on an even input side) is
laid out from the encoding as a list of operators over activation tensors (:func:`graph_plan`),
and TFLM's own memory planning is replayed on it.

``arena_kb``
    The smallest tensor arena (``arena_size``) in which TFLM's ``MicroInterpreter`` builds and
    runs the model: ``tail + max(head, working data)``.

    - ``arena_head_kb``: the non-persistent part, TFLM's ``GreedyMemoryPlanner`` run on every
      activation tensor (each PAD's padded copy included) and every kernel scratch buffer
      (MEAN's int32 accumulator), each rounded up to 16 bytes and alive from the operator
      writing it to the last one reading it (:func:`greedy_arena`, the planner's algorithm).
    - ``arena_tail_kb``: the persistent part, counted: TFLM's per-tensor and per-operator
      structures, each kernel's operator data (the per-channel requantisation multiplier and
      shift of every convolution, 8 bytes per output channel) and a fixed part.
    - working data: what TFLM holds in the head before the plan exists, while it plans and
      while a per-channel convolution prepares (:func:`working_data`). It exceeds the plan
      only at low resolutions (below r=32 for most networks, 42 at most), by up to 15 KB.

    ``head + tail`` is what ``RecordingMicroAllocator`` reports (``print_allocations``). The
    constants were measured with the 64-bit x86 build of the ``tflite-micro`` package and its
    reference kernels. A 32-bit microcontroller stores pointers in 4 bytes, so its tail and
    working data are somewhat smaller; CMSIS-NN kernels ask for scratch buffers, which the
    head would add (see the README's memory section).

``tflite_kb``
    The bytes of the ``.tflite`` flatbuffer: the int8 weights and int32 biases, a float32
    scale and an int64 zero point per quantised channel, and per-operator, per-constant and
    fixed parts of the flatbuffer's tables.

Kilobytes are 1024 bytes. ``benchmarks/bench_tflm_memory.py`` checks the figures against TFLM
on converted networks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from math import prod
from typing import Any, NamedTuple

import numpy as np

from optnas.networks.costs import (
    _HSWISH,
    _SE,
    _SE_REDUCTION,
    _STEM_STRIDE,
    _STRIDES,
    Layer,
    _channels,
    _conv_size,
    _make_divisible,
    gather_parts,
    layers,
    mobilenetv3_subnet,
    part_tables,
    slot_genes,
)
from optnas.networks.memory import KB
from optnas.spaces.mobilenetv3 import MobileNetV3Space, has_feature_mix

# MicroArenaBufferAlignment(): every planned buffer's size is rounded up to it.
_ARENA_ALIGNMENT = 16
_INT32 = 4
# Heads laid out by tflm_memory_vectors that it remembers (about 0.5 KB each).
_REMEMBERED_HEADS = 1 << 16


class Operator(NamedTuple):
    """One operator of the int8 graph.

    Attributes:
        code: the TFLite builtin operator, e.g. ``"CONV_2D"``.
        inputs: the activation tensors it reads (indices into :attr:`GraphPlan.shapes`).
        output: the activation tensor it writes.
        channels: output channels with their own requantisation (a convolution's outputs, 1
            for the per-tensor classifier), else 0.
        constants: ``(bytes, quantisation entries)`` of each constant tensor it reads
            (weights, bias, PAD's paddings, MEAN's axes).
        scratch: bytes of each scratch buffer its kernel asks for in the arena.
    """

    code: str
    inputs: tuple[int, ...]
    output: int
    channels: int = 0
    constants: tuple[tuple[int, int], ...] = ()
    scratch: tuple[int, ...] = ()


class GraphPlan(NamedTuple):
    """The int8 graph of a subnet: the activation tensors' shapes and the operators, in order.

    A shape leaves out the batch dimension: ``(side, side, channels)``, ``(1, 1, channels)``
    for pooled vectors, ``(n_classes,)`` for the logits. Tensor 0 is the input image; an
    int8 tensor's bytes are its number of elements.
    """

    shapes: list[tuple[int, ...]]
    operators: list[Operator]


class _Builder:
    """Appends operators and their output tensors, in execution order."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.shapes = [input_shape]
        self.operators: list[Operator] = []

    def add(self, code: str, inputs: tuple[int, ...], shape: tuple[int, ...], **details: Any) -> int:
        self.shapes.append(shape)
        self.operators.append(Operator(code, inputs, len(self.shapes) - 1, **details))
        return len(self.shapes) - 1

    def conv(self, x: int, side: int, in_channels: int, out_channels: int, *, kernel: int = 1, stride: int = 1,
             hswish: bool = False, depthwise: bool = False) -> tuple[int, int]:
        """A convolution (BN folded, ReLU fused or a HARD_SWISH op after it); returns its output and side."""
        if stride == 2 and side % 2 == 0:
            # TFLite's SAME pads bottom/right only: PyTorch's symmetric padding needs an explicit PAD.
            padded = side + 2 * (kernel // 2) - 1
            x = self.add("PAD", (x,), (padded, padded, in_channels), constants=((8 * _INT32, 0),))
        side = _conv_size(side, stride)
        weights = kernel * kernel * out_channels * (1 if depthwise else in_channels)
        x = self.add("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", (x,), (side, side, out_channels),
                     channels=out_channels,
                     constants=((weights, out_channels), (_INT32 * out_channels, out_channels)))
        if hswish:
            x = self.add("HARD_SWISH", (x,), (side, side, out_channels))
        return x, side

    def mean(self, x: int, channels: int) -> int:
        """A global average pooling to [1, 1, 1, channels], with the reference kernel's scratch buffers."""
        # reduce_common.cc: an int32 accumulator per output element, the input iterator (4 dims), the 2 axes.
        return self.add("MEAN", (x,), (1, 1, channels), constants=((2 * _INT32, 0),),
                        scratch=(_INT32 * channels, _INT32 * 4, _INT32 * 2))

    def block(self, x: int, side: int, in_channels: int, out_channels: int, *, middle: int, kernel: int,
              stride: int, expand: bool, hswish: bool, se: bool) -> int:
        """A residual block: [1x1 expand], depthwise, [SE], 1x1 projection, [ADD]; returns its output."""
        block_input = x
        if expand:
            x, _ = self.conv(x, side, in_channels, middle, hswish=hswish)
        x, out_side = self.conv(x, side, middle, middle, kernel=kernel, stride=stride, hswish=hswish,
                                depthwise=True)
        if se:
            squeezed = _make_divisible(middle // _SE_REDUCTION)
            gate = self.mean(x, middle)
            gate, _ = self.conv(gate, 1, middle, squeezed)
            gate, _ = self.conv(gate, 1, squeezed, middle)
            x = self.add("MUL", (x, gate), (out_side, out_side, middle))
        x, _ = self.conv(x, out_side, middle, out_channels)
        if stride == 1 and in_channels == out_channels:
            x = self.add("ADD", (block_input, x), (out_side, out_side, out_channels))
        return x


def graph_plan(subnet: dict[str, Any], n_classes: int) -> GraphPlan:
    """Return the int8 graph optnas writes for a mobilenetv3 subnet (see ``optnas.networks.tflite``).

    Args:
        subnet: a mobilenetv3 subnet holding its resolution ``r`` (an eemobilenetv3 one gives
            its backbone's graph).
        n_classes: outputs of the classifier.
    """
    subnet = mobilenetv3_subnet(subnet).backbone()
    width = subnet["w"]
    graph = _Builder((subnet["r"], subnet["r"], 3))
    x = _stem(graph, width)
    for layer in layers(subnet):
        x = _layer(graph, x, width, layer)
    _head(graph, x, width, n_classes)
    return GraphPlan(graph.shapes, graph.operators)


def _stem(graph: _Builder, width: float) -> int:
    """The first convolution (3x3, stride 2, h-swish) and the first block, on the graph's input image."""
    stem, first = _channels(width)[:2]
    x, side = graph.conv(0, graph.shapes[0][0], 3, stem, kernel=3, stride=_STEM_STRIDE, hswish=True)
    return graph.block(x, side, stem, first, middle=stem, kernel=3, stride=1, expand=False, hswish=False, se=False)


def _layer(graph: _Builder, x: int, width: float, layer: Layer) -> int:
    """An elastic layer on the tensor ``x``."""
    channels = _channels(width)
    in_channels = channels[layer.stage + 1] if layer.first else channels[layer.stage + 2]
    return graph.block(x, layer.size, in_channels, channels[layer.stage + 2],
                       middle=_make_divisible(round(in_channels * layer.expand)), kernel=layer.kernel,
                       stride=_STRIDES[layer.stage] if layer.first else 1, expand=True,
                       hswish=_HSWISH[layer.stage], se=_SE[layer.stage])


def _head(graph: _Builder, x: int, width: float, n_classes: int) -> None:
    """Final expand (1x1, h-swish), pooling, [feature mix (1x1, h-swish)], classifier."""
    last_stage, final_expand, last_channel = _channels(width)[-3:]
    x, _ = graph.conv(x, graph.shapes[x][0], last_stage, final_expand, hswish=True)
    x = graph.mean(x, final_expand)
    features = final_expand
    if has_feature_mix(width):
        x, _ = graph.conv(x, 1, final_expand, last_channel, hswish=True)
        features = last_channel
    # The classifier's weights and bias are quantised per tensor: one requantisation for all outputs.
    graph.add("FULLY_CONNECTED", (x,), (n_classes,), channels=1,
              constants=((features * n_classes, 1), (_INT32 * n_classes, 1)))


class Buffer(NamedTuple):
    """A buffer for TFLM's memory planner: bytes and the first and last allocation scopes it is alive in."""

    size: int
    first: int
    last: int


def arena_buffers(plan: GraphPlan) -> list[Buffer]:
    """Return the buffers TFLM plans in the arena's head, in the order it adds them.

    As ``AllocationInfoBuilder`` marks them: operator ``i`` runs in scope ``i + 1``, the
    graph input is created in scope 0, a tensor lives from the scope of the operator writing
    it to that of the last one reading it (the graph output, written by the last operator, is
    in the last scope); the activation tensors come in tensor order, then the scratch buffers
    in the order the kernels asked for them, each alive in its operator's scope only. Sizes
    are rounded up to 16 bytes.

    Args:
        plan: from :func:`graph_plan`.
    """
    first = [0] * len(plan.shapes)
    last = [0] * len(plan.shapes)
    scratch = []
    for scope, operator in enumerate(plan.operators, start=1):
        first[operator.output] = last[operator.output] = scope
        for tensor in operator.inputs:
            last[tensor] = scope
        scratch += [Buffer(_aligned(size), scope, scope) for size in operator.scratch]
    tensors = [Buffer(_aligned(prod(shape)), start, end) for shape, start, end in zip(plan.shapes, first, last)]
    return tensors + scratch


def greedy_arena(buffers: list[Buffer]) -> int:
    """Return the arena bytes TFLM's ``GreedyMemoryPlanner`` lays some buffers out in.

    The planner's algorithm (``greedy_memory_planner.cc``): buffers in descending size
    (a stable sort of the buffers in reverse order of addition, so ties go last-added
    first), each placed at the lowest offset where it fits between the already placed
    buffers whose lifetimes overlap its own, scanned in offset order; the arena is the
    highest end. Here the placed buffers alive in each scope are kept per scope, so only
    those overlapping a buffer's lifetime are scanned.

    On most graphs of :func:`graph_plan` the layout needs no more than the most bytes alive in
    one scope; on others it leaves gaps, e.g. where a residual block's held input and the sum
    it is added to have the same size (about one random subnet in six, up to 25 % more).

    Args:
        buffers: in the order they are added, as from :func:`arena_buffers`.
    """
    alive: list[list[int]] = [[] for _ in range(max(buffer.last for buffer in buffers) + 1)]
    offsets = [0] * len(buffers)
    high = 0
    for index in sorted(range(len(buffers)), key=lambda index: (-buffers[index].size, -index)):
        size, first, last = buffers[index]
        overlapping = {other for scope in range(first, last + 1) for other in alive[scope]}
        offset = 0
        # Placed buffers at one offset may come in either order: the first gap found is the same.
        for other in sorted(overlapping, key=offsets.__getitem__):
            if offsets[other] - offset >= size:
                break
            offset = max(offset, offsets[other] + buffers[other].size)
        offsets[index] = offset
        for scope in range(first, last + 1):
            alive[scope].append(index)
        high = max(high, offset + size)
    return high


# The tail: persistent allocations of the 64-bit tflite-micro build. Every tensor of the graph
# (constants too) has a TfLiteEvalTensor, every operator a NodeAndRegistration, every scratch
# buffer a ScratchBufferHandle.
_EVAL_TENSOR = 24
_NODE = 64
_SCRATCH_HANDLE = 8
# Per operator: its kernel's OpData (AllocatePersistentBuffer, 16-byte aligned) and its builtin
# options; a requantising kernel adds an int32 multiplier and shift array per output channel.
_OPERATOR_DATA = {"CONV_2D": 80 + 28, "DEPTHWISE_CONV_2D": 80 + 28, "FULLY_CONNECTED": 80 + 16,
                  "PAD": 64, "MEAN": 48 + 1, "ADD": 64 + 8, "MUL": 48 + 4, "HARD_SWISH": 32}
# The allocator's own objects, the input and output TfLiteTensors and alignment (fitted).
_TAIL_FIXED = 721


# Before the plan exists the head holds TFLM's working data, which can outgrow a small plan: the
# arena must hold the larger. While planning (AllocationInfoBuilder, GreedyMemoryPlanner::Init):
# an AllocationInfo per tensor and scratch buffer, the planner's arrays per planned buffer and the
# scratch buffer requests; while a per-channel convolution prepares: 12 bytes per output channel
# (8 of them its filter's and bias's int32 zero points) and its TfLiteTensors. The per-channel and
# fixed bytes were measured by bisecting the smallest arena.
_ALLOCATION_INFO = 32
_PLANNER_BUFFER = 40
_SCRATCH_REQUEST = 16
_PLANNING_FIXED = 8
_PREPARE_CHANNEL = 12
_PREPARE_FIXED = 480


def arena_tail(plan: GraphPlan) -> int:
    """Return the bytes of TFLM's persistent arena (the tail) for a graph.

    Args:
        plan: from :func:`graph_plan`.
    """
    return _TAIL_FIXED + _EVAL_TENSOR + sum(_operator_tail(operator) for operator in plan.operators)


def _operator_tail(operator: Operator) -> int:
    tensors = 1 + len(operator.constants)
    return (_NODE + _OPERATOR_DATA[operator.code] + _EVAL_TENSOR * tensors + 2 * _aligned(_INT32 * operator.channels)
            + _SCRATCH_HANDLE * len(operator.scratch))


class _Counts(NamedTuple):
    """What TFLM's working data grows with: tensors (constants too), activation tensors, scratch buffers,
    and the most output channels of a per-channel convolution."""

    tensors: Any
    activations: Any
    scratch: Any
    channels: Any


def _counts(plan: GraphPlan, with_input: bool = True) -> _Counts:
    """The counts of a graph, or of a part of one without its input tensor."""
    operators = plan.operators
    return _Counts(tensors=sum(1 + len(operator.constants) for operator in operators) + with_input,
                   activations=len(operators) + with_input,
                   scratch=sum(len(operator.scratch) for operator in operators),
                   channels=max((operator.channels for operator in operators), default=0))


def working_data(counts: _Counts) -> Any:
    """Return the most bytes of TFLM's working data in the head before the plan exists (see the constants).

    Args:
        counts: of a whole graph (numbers, or arrays of them).
    """
    tensors, activations, scratch, channels = counts
    planning = (_ALLOCATION_INFO * (tensors + scratch) + _PLANNER_BUFFER * (activations + scratch)
                + _SCRATCH_REQUEST * scratch + _PLANNING_FIXED)
    prepare = _PREPARE_CHANNEL * channels + _SCRATCH_REQUEST * scratch + _PREPARE_FIXED
    return np.maximum(planning, prepare)


def _aligned(size: int) -> int:
    return -(-size // _ARENA_ALIGNMENT) * _ARENA_ALIGNMENT


# The file: a constant's bytes, a float32 scale and an int64 zero point per quantised channel,
# and, fitted on converted networks (``benchmarks/bench_tflm_memory.py --fit``), the tables of an
# operator with its output tensor, of a constant tensor with its buffer (and its alignment),
# and a fixed part (the model's tables, the input tensor).
_QUANT_ENTRY = 4 + 8
_FILE_OPERATOR = 116
_FILE_CONSTANT = 91
_FILE_FIXED = 535


def flatbuffer_bytes(plan: GraphPlan) -> int:
    """Return the bytes of the ``.tflite`` flatbuffer of a graph.

    Args:
        plan: from :func:`graph_plan`.
    """
    return _FILE_FIXED + sum(_operator_file(operator) for operator in plan.operators)


def _operator_file(operator: Operator) -> int:
    return _FILE_OPERATOR + sum(_FILE_CONSTANT + size + _QUANT_ENTRY * entries for size, entries in operator.constants)


def tflm_memory(subnet: dict[str, Any], n_classes: int) -> dict[str, float]:
    """Return TFLM's arena and the ``.tflite`` file of a subnet's int8 graph (see the module docstring).

    Args:
        subnet: a mobilenetv3 subnet holding its resolution ``r``.
        n_classes: outputs of the classifier.

    Returns:
        ``arena_kb``, ``arena_head_kb``, ``arena_tail_kb`` and ``tflite_kb``.
    """
    plan = graph_plan(subnet, n_classes)
    figures = _figures(greedy_arena(arena_buffers(plan)), arena_tail(plan), flatbuffer_bytes(plan),
                       working_data(_counts(plan)))
    return {name: float(value) for name, value in figures.items()}


def tflm_memory_vectors(space: MobileNetV3Space, n_classes: int) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Return :func:`tflm_memory` for whole arrays of gene vectors of a space, with the same figures.

    The graph splits into parts (the stem, each elastic layer, the head), whose bytes of tail
    and file and counts of working data are tabulated once here and added up per vector. The
    head is not a sum or a maximum of the parts' (the greedy planner's layout of one part
    depends on the next part's buffers, which a part's output outlives): it is laid out per
    distinct vector (0.8 ms each on this project's 2-core sandbox), and the last 65,536 are
    remembered.

    Args:
        space: a mobilenetv3 space (not an early-exit one).
        n_classes: outputs of the classifier.

    Returns:
        A function of an int array (n, n_genes) of gene vectors giving the figures of
        :func:`tflm_memory`, each an array (n,).
    """

    def stem(width: float, resolution: int) -> tuple[int, ...]:
        graph = _Builder((resolution, resolution, 3))
        _stem(graph, width)
        return _part_figures(graph, with_input=True)

    def layer(width: float, spec: Layer) -> tuple[int, ...]:
        channels = _channels(width)
        graph = _Builder((spec.size, spec.size, channels[spec.stage + 1] if spec.first else channels[spec.stage + 2]))
        _layer(graph, 0, width, spec)
        return _part_figures(graph)

    def head(width: float, side: int) -> tuple[int, ...]:
        graph = _Builder((side, side, _channels(width)[-3]))
        _head(graph, 0, width, n_classes)
        return _part_figures(graph)

    tables = part_tables(space, stem, layer, head)

    @lru_cache(maxsize=_REMEMBERED_HEADS)
    def arena_head(vector: bytes) -> int:
        subnet = space.from_vector(np.frombuffer(vector, dtype=np.int64))
        return greedy_arena(arena_buffers(graph_plan(subnet, n_classes)))

    def figures(vectors: np.ndarray) -> dict[str, np.ndarray]:
        vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, len(space.gene_names()))
        tail, flatbuffer, tensors, activations, scratch, channels = gather_parts(tables, slot_genes(space, vectors))
        counts = _Counts(tensors.sum(axis=0), activations.sum(axis=0), scratch.sum(axis=0), channels.max(axis=0))
        head_bytes = np.array([arena_head(vector.tobytes()) for vector in vectors], dtype=np.int64)
        return _figures(head_bytes, _TAIL_FIXED + tail.sum(axis=0), _FILE_FIXED + flatbuffer.sum(axis=0),
                        working_data(counts))

    return figures


def _part_figures(graph: _Builder, with_input: bool = False) -> tuple[int, ...]:
    """Tail and file bytes (without the fixed parts) and the counts of a part of the graph."""
    plan = GraphPlan(graph.shapes, graph.operators)
    tail = sum(_operator_tail(operator) for operator in plan.operators) + (_EVAL_TENSOR if with_input else 0)
    flatbuffer = sum(_operator_file(operator) for operator in plan.operators)
    return (tail, flatbuffer, *_counts(plan, with_input))


# The figures this module gives, by the names searches store them under.
TFLM_FIGURES = frozenset({"arena_kb", "arena_head_kb", "arena_tail_kb", "tflite_kb"})


def _figures(head: Any, tail: Any, flatbuffer: Any, working: Any) -> dict[str, Any]:
    """The figures of :func:`tflm_memory` from bytes (numbers or arrays)."""
    return {"arena_kb": (np.maximum(head, working) + tail) / KB, "arena_head_kb": head / KB,
            "arena_tail_kb": tail / KB, "tflite_kb": flatbuffer / KB}
