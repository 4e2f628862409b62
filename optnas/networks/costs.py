"""Analytic cost model of the OFA MobileNetV3 space.

The costs of a subnet are computed from its canonical form (see
:class:`~optnas.spaces.MobileNetV3Space`) with per-layer formulas, without building the
network: a profile takes microseconds, where building the subnet with the ``ofa`` package and
tracing it with ``torchprofile`` takes a quarter of a second or more.

The network is the static subnet that ``ofa`` extracts: ``OFAMobileNetV3(n_classes,
dropout_rate=0, width_mult=w, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
depth_list=[2, 3, 4])``, then ``set_active_subnet(ks, e, d)`` with the 20-slot lists (slot
``j`` of stage ``s`` is block ``1 + 4 s + j`` of the supernet) and
``get_active_subnet(preserve_weight=True)``. Below width 1.0 the head has no feature mix
layer: the classifier reads the pooled final expand (MCUNet's head, see
:func:`~optnas.spaces.mobilenetv3.has_feature_mix` and
:func:`~optnas.networks.supernet.build_supernet`). It is run at batch 1 on a ``3 x r x r`` input.
All figures are in millions and are not rounded:

``params``
    The number of parameters of the subnet, ``sum(p.numel() for p in subnet.parameters())``:
    convolution weights, the biases of the squeeze-and-excitation (SE) convolutions, the
    weight and bias of every batch normalization (BN), and the classifier's weight and bias.
    BN running statistics are buffers, not parameters.

``macs``
    Multiply-accumulate operations as ``torchprofile.profile_macs`` (0.1.0) counts them on
    that network, exactly: every convolution (output elements x input channels per group x
    kernel area), the classifier (inputs x outputs), one per output element of every BN,
    of every h-swish (its multiplication) and of every SE rescaling (feature map x gate), and
    one per output element of both reductions of every global average pooling (over the
    width, then over the height). ReLU, h-sigmoid, residual additions and biases count zero.

``activations``
    The number of elements of all the tensors the layers produce, each counted once: the
    output of every convolution unit (a convolution with its BN and activation, applied in
    place, is one tensor), including the SE's two 1x1 convolutions and the feature mix
    layer where there is one; the pooled vector and the rescaled feature map of every SE;
    the output of every residual addition; the globally pooled vector; and the logits. The
    input image is not counted; neither is the row-wise intermediate of the two-step
    average pooling.

``peak_activations``
    The largest number of elements alive at once when the layers run one after another.
    A tensor lives from the operation that produces it to the last operation that reads it,
    and an operation's inputs and output are alive together while it runs; the operations
    and tensors are those of ``activations`` (BN and activations in place, each global
    average pooling one operation). So the input image is alive during the first
    convolution, a block's input is held until its residual addition, and an SE's feature
    map is held while its gate is computed. Multiply by the bytes per element (4 in float32)
    for memory.

``tiny_ml``
    The CNAS figure of merit, a weighted sum of params, MACs and activations with a penalty
    per exceeded bound (:func:`tiny_ml`).

Only the mobilenetv3 space is modelled: the costs of a NAS-Bench-201 cell come from its
tables, through :func:`optnas.spaces.nasbench201.lookup`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from itertools import groupby
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np

from optnas.spaces import Subnet, as_subnet
from optnas.spaces.mobilenetv3 import (
    DEPTHS,
    EXPAND_RATIOS,
    KERNEL_SIZES,
    MAX_DEPTH,
    N_SLOTS,
    N_STAGES,
    MobileNetV3Space,
    has_feature_mix,
)

COST_NAMES = ("params", "macs", "activations", "peak_activations")

# The OFA MobileNetV3 layout: channels of the stem, of the first block and of the five
# stages, before the width multiplier; then each stage's first stride, activation and SE.
_BASE_CHANNELS = (16, 16, 24, 40, 80, 112, 160)
_BASE_FINAL_EXPAND = 960
_BASE_LAST_CHANNEL = 1280
_STEM_STRIDE = 2
_STRIDES = (2, 2, 2, 1, 2)
_HSWISH = (False, False, True, True, True)
_SE = (False, True, False, True, True)
_SE_REDUCTION = 4
_CHANNEL_DIVISOR = 8


class _Cost(NamedTuple):
    params: int
    macs: int
    activations: int
    peak: int

    def then(self, other: _Cost) -> _Cost:
        """Chain ``other`` after this part of the network."""
        return _Cost(
            self.params + other.params,
            self.macs + other.macs,
            self.activations + other.activations,
            max(self.peak, other.peak),
        )


def profile(subnet: dict[str, Any], n_classes: int = 1000) -> dict[str, float]:
    """Return the costs of a mobilenetv3 subnet, in millions (see the module docstring).

    Args:
        subnet: a mobilenetv3 subnet holding its resolution ``r`` (``w`` defaults to 1.0);
            the compact form, with one ``ks`` and ``e`` value per active layer, is accepted.
            An eemobilenetv3 subnet's costs are its backbone's (with its final exit).
        n_classes: the number of outputs of the classifier.

    Returns:
        ``params``, ``macs``, ``activations`` and ``peak_activations``, in millions.

    Raises:
        ValueError: if the subnet is not a valid mobilenetv3 subnet or ``n_classes`` is not
            a positive integer.
    """
    _check_classes(n_classes)
    subnet = mobilenetv3_subnet(subnet).backbone()
    cost, _, size = _stages(subnet)[-1]
    cost = cost.then(_head(subnet["w"], size, int(n_classes)))
    return dict(zip(COST_NAMES, (value / 1e6 for value in cost)))


def stage_outputs(subnet: dict[str, Any]) -> list[dict[str, float]]:
    """Return the backbone's cumulative costs and output shape after each of the five stages.

    The backbone is the stem, the first block and the stages' layers (no final head), so
    these are the figures an early exit placed after that stage adds its head to.

    Args:
        subnet: a mobilenetv3 subnet holding its resolution ``r``.

    Returns:
        One dict per stage: ``params`` and ``macs`` (millions, cumulative from the input),
        ``channels`` and ``size`` (the stage's output feature map, ``channels x size x size``).
    """
    return [
        {"params": cost.params / 1e6, "macs": cost.macs / 1e6, "channels": channels, "size": size}
        for cost, channels, size in _stages(mobilenetv3_subnet(subnet).backbone())
    ]


class Layer(NamedTuple):
    """One elastic layer of a subnet as it runs: its stage, kernel, expand ratio and input side."""

    stage: int
    first: bool
    kernel: int
    expand: int
    size: int


def layers(subnet: dict[str, Any]) -> list[Layer]:
    """Return the active elastic layers of a mobilenetv3 subnet, in order, with their input sides.

    The stem (first convolution and first block) runs before them on the ``r x r`` image and
    the final head after them; a stage's first layer applies the stage's stride.

    Args:
        subnet: a mobilenetv3 subnet holding its resolution ``r``.
    """
    subnet = mobilenetv3_subnet(subnet).backbone()
    size = _conv_size(subnet["r"], _STEM_STRIDE)
    result = []
    for stage, depth in enumerate(subnet["d"]):
        for layer in range(depth):
            slot = stage * MAX_DEPTH + layer
            result.append(Layer(stage, layer == 0, subnet["ks"][slot], subnet["e"][slot], size))
            if layer == 0:
                size = _conv_size(size, _STRIDES[stage])
    return result


def _stages(subnet: Subnet) -> list[tuple[_Cost, int, int]]:
    """Cumulative cost, output channels and output size after each stage of a canonical mobilenetv3 subnet."""
    width = subnet["w"]
    cost = _stem(width, subnet["r"])
    stages = []
    for stage, stage_layers in groupby(layers(subnet), key=lambda layer: layer.stage):
        for layer in stage_layers:
            cost = cost.then(_layer(width, *layer))
        # Only a stage's first layer strides, and its depth is at least 2: the last is not first.
        stages.append((cost, _channels(width)[stage + 2], layer.size))
    return stages


def tiny_ml(
    params: float,
    macs: float,
    activations: float,
    *,
    pmax: float | None,
    mmax: float | None,
    amax: float | None,
    wp: float,
    wm: float,
    wa: float,
    penalty: float,
) -> float:
    """Return the CNAS figure of merit ``Σ w·(x + P·max(0, x − xmax))`` over params, MACs, activations.

    A bound that is not set adds no penalty term.

    Args:
        params: parameters in millions (a float, or an array of them with ``macs`` and
            ``activations`` arrays of the same shape).
        macs: MACs in millions.
        activations: activations in millions.
        pmax: bound on params, or None.
        mmax: bound on MACs, or None.
        amax: bound on activations, or None.
        wp: weight of params.
        wm: weight of MACs.
        wa: weight of activations.
        penalty: the penalty factor P.
    """

    def term(value: float, bound: float | None) -> float:
        if bound is None:
            return value + 0.0
        # Arrays too: the surrogate sampler scores whole populations of offspring at once.
        excess = np.maximum(0.0, value - bound) if isinstance(value, np.ndarray) else max(0.0, value - bound)
        return value + penalty * excess

    return wp * term(params, pmax) + wm * term(macs, mmax) + wa * term(activations, amax)


class SlotGenes(NamedTuple):
    """Gene vectors of a mobilenetv3 space split per concept, one row per vector.

    ``width`` indexes the space's ``widths``, ``resolution`` the space's resolutions, ``kernel``
    and ``expand`` (one column per slot) ``KERNEL_SIZES`` and ``EXPAND_RATIOS``; ``active``
    marks the slots within their stage's depth.
    """

    width: np.ndarray
    resolution: np.ndarray
    active: np.ndarray
    kernel: np.ndarray
    expand: np.ndarray


def slot_genes(space: MobileNetV3Space, vectors: np.ndarray) -> SlotGenes:
    """Split gene vectors of a mobilenetv3 space (as from ``space.to_vector``) per concept.

    Args:
        space: the space the vectors encode subnets of.
        vectors: int array of shape (n, n_genes), or one vector.
    """
    column = {name: index for index, name in enumerate(space.gene_names())}
    vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, len(column))
    depth, kernel, expand = (column[name] for name in ("d0", "ks0", "e0"))
    depths = np.asarray(DEPTHS)[vectors[:, depth : depth + N_STAGES]]
    active = np.arange(N_SLOTS) % MAX_DEPTH < np.repeat(depths, MAX_DEPTH, axis=1)
    zeros = np.zeros(len(vectors), dtype=np.int64)
    return SlotGenes(
        width=vectors[:, column["w"]] if "w" in column else zeros,
        resolution=vectors[:, column["r"]] if "r" in column else zeros,
        active=active,
        kernel=vectors[:, kernel : kernel + N_SLOTS],
        expand=vectors[:, expand : expand + N_SLOTS],
    )


class PartTables(NamedTuple):
    """Per-part figures of every subnet of a space (see :func:`part_tables`)."""

    stem: np.ndarray
    layers: np.ndarray
    head: np.ndarray


def part_tables(
    space: MobileNetV3Space,
    stem: Callable[[float, int], Sequence[float]],
    layer: Callable[[float, Layer], Sequence[float]],
    head: Callable[[float, int], Sequence[float]],
) -> PartTables:
    """Tabulate figures that a subnet chains from its parts, for every part a space's subnets run.

    A layer's figures depend on its width, slot, kernel, expand ratio and input side, and the
    side on the resolution alone (not on the depths), so one table indexed by width,
    resolution, slot, kernel and expand ratio serves every subnet; :func:`gather_parts` reads it.

    Args:
        space: a mobilenetv3 space.
        stem: the m figures of the stem at a width and resolution.
        layer: those of an elastic layer at a width (the layer holds its input side).
        head: those of the final head at a width and input side.

    Returns:
        Figure first: ``stem`` and ``head`` of shape (m, n_widths, n_resolutions), ``layers``
        of shape (m, n_widths, n_resolutions, N_SLOTS, len(KERNEL_SIZES), len(EXPAND_RATIOS)).
    """
    stems, slots, heads = [], [], []
    choices: dict[tuple, list] = {}
    for width in space.widths:
        for resolution in space.resolutions:
            # Every stage at its largest depth: one layer per slot, each with its input side.
            walk = layers(MobileNetV3Space(width_mult=width, resolutions=[resolution]).largest())
            for spec in walk:
                # Resolutions that share a slot's side share its figures.
                key = (width, spec.stage, spec.first, spec.size)
                if key not in choices:
                    choices[key] = [[layer(width, spec._replace(kernel=k, expand=e)) for e in EXPAND_RATIOS]
                                    for k in KERNEL_SIZES]
                slots.append(choices[key])
            stems.append(stem(width, resolution))
            heads.append(head(width, walk[-1].size))
    shape = (len(space.widths), len(space.resolutions))

    def figure_first(values: list, *inner: int) -> np.ndarray:
        table = np.array(values)
        return np.moveaxis(table, -1, 0).reshape(table.shape[-1], *shape, *inner).copy()

    return PartTables(
        stem=figure_first(stems),
        layers=figure_first(slots, N_SLOTS, len(KERNEL_SIZES), len(EXPAND_RATIOS)),
        head=figure_first(heads),
    )


def gather_parts(tables: PartTables, genes: SlotGenes) -> np.ndarray:
    """Return the figures of every part of every subnet, in the order the network runs them.

    Args:
        tables: from :func:`part_tables`.
        genes: from :func:`slot_genes`, of the same space.

    Returns:
        Array (m, 2 + N_SLOTS, n): per figure, the stem, the 20 slots (zero where inactive)
        and the head of each subnet (subnets last, so that chaining parts adds whole rows).
    """
    m, _, n_resolutions, _, n_kernels, n_expands = tables.layers.shape
    place = genes.width * n_resolutions + genes.resolution
    index = ((place * N_SLOTS + np.arange(N_SLOTS)[:, None]) * n_kernels + genes.kernel.T) * n_expands + genes.expand.T
    # Inactive slots read an appended zero entry: one flat take per figure, no masking pass.
    layer_entries = tables.layers.reshape(m, -1)
    index[~genes.active.T] = layer_entries.shape[1]
    layer_entries = np.concatenate([layer_entries, np.zeros((m, 1), dtype=layer_entries.dtype)], axis=1)
    parts = np.empty((m, 2 + N_SLOTS, len(place)), dtype=layer_entries.dtype)
    for figure in range(m):
        parts[figure, 0] = tables.stem[figure].reshape(-1)[place]
        parts[figure, 1:-1] = layer_entries[figure][index]
        parts[figure, -1] = tables.head[figure].reshape(-1)[place]
    return parts


def profile_vectors(space: MobileNetV3Space, n_classes: int = 1000) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Return :func:`profile` for whole arrays of gene vectors of a space, with the same figures.

    The per-part costs are tabulated once here; each call gathers and chains them.

    Args:
        space: a mobilenetv3 space (not an early-exit one: its exit heads are not modelled).
        n_classes: the number of outputs of the classifier.

    Returns:
        A function of an int array (n, n_genes) of gene vectors giving ``params``, ``macs``,
        ``activations`` and ``peak_activations`` (millions), each an array (n,).
    """
    _check_classes(n_classes)
    tables = part_tables(space, _stem, lambda width, layer: _layer(width, *layer),
                         lambda width, size: _head(width, size, int(n_classes)))

    def costs(vectors: np.ndarray) -> dict[str, np.ndarray]:
        parts = gather_parts(tables, slot_genes(space, vectors))
        # Sums for the totals, the largest part for the peak: as _Cost.then chains them.
        totals = [*parts[:-1].sum(axis=1), parts[-1].max(axis=0)]
        return {name: total / 1e6 for name, total in zip(COST_NAMES, totals)}

    return costs


def clear_cache() -> None:
    """Forget the memoised per-layer costs, e.g. to time a cold :func:`profile`."""
    for cached in (_channels, _stem, _layer, _head):
        cached.cache_clear()


def _check_classes(n_classes: Any) -> None:
    if isinstance(n_classes, bool) or not isinstance(n_classes, Integral) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")


def mobilenetv3_subnet(subnet: Any) -> Subnet:
    """Return a mobilenetv3 or eemobilenetv3 subnet as a canonical :class:`~optnas.spaces.Subnet`.

    A JSON object is read by :func:`~optnas.spaces.as_subnet`: at its own width and resolution.

    Args:
        subnet: a :class:`~optnas.spaces.Subnet` or a JSON object holding its resolution ``r``.

    Raises:
        ValueError: the subnet is not a valid one of those spaces.
    """
    try:
        subnet = as_subnet(subnet)
    except ValueError as error:
        raise ValueError(f"not a valid mobilenetv3 subnet: {error}") from None
    if not isinstance(subnet.space, MobileNetV3Space):
        raise ValueError(
            "costs are modelled for mobilenetv3 subnets only; a nasbench201 cell's come from "
            "optnas.spaces.nasbench201.lookup"
        )
    return subnet


def _make_divisible(value: float) -> int:
    """Round a channel count as ``ofa.utils.make_divisible`` does."""
    divisor = _CHANNEL_DIVISOR
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    # ofa never rounds a width down by more than 10 %.
    return rounded + divisor if rounded < 0.9 * value else rounded


@cache
def _channels(width: float) -> tuple[int, ...]:
    """Return the channels of the stem, first block, five stages, final expand and feature mix.

    The last is the feature mix's even at widths without one (:func:`has_feature_mix`).
    """
    bases = (*_BASE_CHANNELS, _BASE_FINAL_EXPAND, _BASE_LAST_CHANNEL)
    return tuple(_make_divisible(base * width) for base in bases)


def _conv_size(size: int, stride: int) -> int:
    # Every convolution pads by kernel_size // 2, so only the stride changes the size.
    return (size - 1) // stride + 1


@cache
def _stem(width: float, resolution: int) -> _Cost:
    """The first convolution (3x3, stride 2, BN, h-swish) and the first block."""
    stem, first = _channels(width)[:2]
    size = _conv_size(resolution, _STEM_STRIDE)
    image = 3 * resolution * resolution
    weights_per_output = 3 * 3 * 3
    output = stem * size * size
    conv = _Cost(
        params=stem * (weights_per_output + 2),
        macs=output * (weights_per_output + 2),
        activations=output,
        peak=image + output,
    )
    first_block = _mbconv(
        stem,
        first,
        kernel=3,
        stride=1,
        middle=stem,
        expand=False,
        hswish=False,
        se=False,
        size=size,
    )
    return conv.then(first_block)


@cache
def _layer(width: float, stage: int, first: bool, kernel: int, expand: int, size: int) -> _Cost:
    """One elastic layer of a stage, whose input is ``size x size``."""
    channels = _channels(width)
    in_channels = channels[stage + 1] if first else channels[stage + 2]
    return _mbconv(
        in_channels,
        channels[stage + 2],
        kernel=kernel,
        stride=_STRIDES[stage] if first else 1,
        middle=_make_divisible(round(in_channels * expand)),
        expand=True,
        hswish=_HSWISH[stage],
        se=_SE[stage],
        size=size,
    )


def _mbconv(
    in_channels: int,
    out_channels: int,
    *,
    kernel: int,
    stride: int,
    middle: int,
    expand: bool,
    hswish: bool,
    se: bool,
    size: int,
) -> _Cost:
    """A residual block: [1x1 expand], depthwise kxk, [SE], 1x1 projection, [addition]."""
    # Per element of an activation's output: BN counts one MAC, h-swish one more.
    unit_macs = 2 if hswish else 1
    block_input = in_channels * size * size
    residual = stride == 1 and in_channels == out_channels
    held = block_input if residual else 0
    params = macs = activations = 0
    peaks = []

    features = block_input
    if expand:
        features = middle * size * size
        params += in_channels * middle + 2 * middle
        macs += features * (in_channels + unit_macs)
        activations += features
        peaks.append(block_input + features)

    out_size = _conv_size(size, stride)
    depthwise = middle * out_size * out_size
    params += middle * kernel * kernel + 2 * middle
    macs += depthwise * (kernel * kernel + unit_macs)
    activations += depthwise
    # Without an expansion the depthwise convolution reads the held block input itself.
    peaks.append((held if expand else 0) + features + depthwise)
    features = depthwise

    if se:
        squeezed = _make_divisible(middle // _SE_REDUCTION)
        params += 2 * middle * squeezed + squeezed + middle
        # Pooling (two reductions), the two 1x1 convolutions and the rescaling.
        macs += middle * out_size + middle + 2 * middle * squeezed + depthwise
        activations += middle + squeezed + middle + depthwise
        # The depthwise output stays alive until the rescaling; steps: pooling, reduction,
        # expansion (to the gate) and rescaling, whose output the projection reads.
        peaks += [
            held + depthwise + middle,
            held + depthwise + middle + squeezed,
            held + depthwise + squeezed + middle,
            held + depthwise + middle + depthwise,
        ]

    output = out_channels * out_size * out_size
    params += middle * out_channels + 2 * out_channels
    macs += output * (middle + 1)
    activations += output
    peaks.append(held + features + output)
    if residual:
        activations += output
        peaks.append(block_input + 2 * output)
    return _Cost(params, macs, activations, max(peaks))


@cache
def _head(width: float, size: int, n_classes: int) -> _Cost:
    """Final expand (1x1, BN, h-swish), pooling, [feature mix (1x1, h-swish)], classifier."""
    last_stage, final_expand, last_channel = _channels(width)[-3:]
    area = size * size
    expanded = final_expand * area
    cost = _Cost(
        params=last_stage * final_expand + 2 * final_expand,
        macs=expanded * (last_stage + 2) + final_expand * size + final_expand,
        activations=expanded + final_expand,
        peak=max(last_stage * area + expanded, expanded + final_expand),
    )
    features = final_expand
    if has_feature_mix(width):
        cost = cost.then(_Cost(
            params=final_expand * last_channel,
            macs=last_channel * (final_expand + 1),
            activations=last_channel,
            peak=final_expand + last_channel,
        ))
        features = last_channel
    return cost.then(_Cost(
        params=features * n_classes + n_classes,
        macs=features * n_classes,
        activations=n_classes,
        peak=features + n_classes,
    ))
