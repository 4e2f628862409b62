"""Exact costs of eemobilenetv3 networks' exit heads, from the encoding alone (no torch).

The heads are those of :class:`optnas.networks.early_exits.ExitHead`. Costs, in millions,
counted like the backbone's (``torchprofile`` 0.1 conventions: the head's max pooling and
ReLU count zero, its BN one MAC per output element, its global average pooling one per
pooled value):

``exit_macs[i]``
    MACs a sample spends to leave at exit ``i`` (intermediate exits in order, then the
    final one): the backbone up to that exit's stage plus every head it passed through,
    its own included (a head that does not fire still ran). So the last entry is the
    backbone's MACs plus all heads'.
``avg_macs``
    ``Σ exit_ratios[i] × exit_macs[i]``: the expected MACs per sample.
"""

from __future__ import annotations

from typing import Any

from optnas.networks.costs import profile, stage_outputs
from optnas.spaces import Subnet, as_subnet

# A head pools its input down to about this side before its convolution.
_HEAD_SIZE = 4
_HEAD_MIN_WIDTH = 32
_HEAD_MAX_WIDTH = 128


def head_layout(channels: int, size: int) -> tuple[int, int]:
    """Return ``(pool, width)`` of the exit head for a ``channels x size x size`` feature map.

    The head max-pools by ``pool`` so that its 3x3 convolution runs on about 4x4, and its
    width is twice the input channels, within 32..128: big feature maps get no costlier heads.

    Args:
        channels: channels of the stage output.
        size: side of the stage output.
    """
    pool = max(1, size // _HEAD_SIZE)
    width = min(_HEAD_MAX_WIDTH, max(_HEAD_MIN_WIDTH, 2 * channels))
    return pool, width


def head_costs(channels: int, size: int, n_classes: int) -> dict[str, int]:
    """Return the exact ``params`` and ``macs`` of one exit head (plain counts, not millions).

    Args:
        channels: channels of the stage output.
        size: side of the stage output.
        n_classes: classes of the task (the head has one more output, its confidence).
    """
    pool, width = head_layout(channels, size)
    side = size // pool
    outputs = n_classes + 1
    return {
        "params": channels * width * 9 + 2 * width + (width + 1) * outputs,
        # convolution, BN, global average pooling, linear layer.
        "macs": width * side * side * (channels * 9 + 1) + width + width * outputs,
    }


def exit_profile(subnet: dict[str, Any], n_classes: int) -> dict[str, Any]:
    """Return the per-exit costs of an eemobilenetv3 subnet, in millions.

    Args:
        subnet: an eemobilenetv3 subnet with its resolution ``r``.
        n_classes: classes of the task.

    Returns:
        ``exit_stages`` (1-based stage of each intermediate exit), ``head_params`` and
        ``head_macs`` (per intermediate head), ``exit_macs`` (cumulative MACs to leave at each
        exit, final included), ``params`` (backbone plus every head) and ``macs`` (the
        backbone with its final exit alone).
    """
    subnet = _with_exits(subnet)
    stages = stage_outputs(subnet)
    backbone = profile(subnet, n_classes)
    head_params, head_macs, exit_macs = [], [], []
    for stage in subnet.exit_stages:
        costs = head_costs(stages[stage]["channels"], stages[stage]["size"], n_classes)
        head_params.append(costs["params"] / 1e6)
        head_macs.append(costs["macs"] / 1e6)
        exit_macs.append(stages[stage]["macs"] + sum(head_macs))
    exit_macs.append(backbone["macs"] + sum(head_macs))
    return {
        "exit_stages": [stage + 1 for stage in subnet.exit_stages],
        "head_params": head_params,
        "head_macs": head_macs,
        "exit_macs": exit_macs,
        "params": backbone["params"] + sum(head_params),
        "macs": backbone["macs"],
    }


def _with_exits(subnet: dict[str, Any]) -> Subnet:
    """The canonical form of a subnet with early exits (a JSON object: at its own width and resolution)."""
    subnet = as_subnet(subnet)
    if not subnet.has_exits:
        raise ValueError(f"an eemobilenetv3 subnet is needed; this {subnet.space.name} one has no early exits")
    return subnet
