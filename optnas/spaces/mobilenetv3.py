"""The OFA MobileNetV3 search space: 5 stages of elastic depth, kernel size and expand ratio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from optnas.errors import OptionError
from optnas.spaces.base import SearchSpace, SpaceOptions, Subnet

N_STAGES = 5
MAX_DEPTH = 4
N_SLOTS = N_STAGES * MAX_DEPTH
DEPTHS = (2, 3, 4)
KERNEL_SIZES = (3, 5, 7)
EXPAND_RATIOS = (3, 4, 6)
# OFA's supernets are published at 1.0 and 1.2; MCUNet-sized networks need narrower widths.
WIDTH_MULTS = (0.35, 0.5, 0.75, 1.0, 1.2)
DEFAULT_WIDTH_MULT = 1.0
# The narrowest width with OFA's feature mix layer (see has_feature_mix).
_FEATURE_MIX_WIDTH = 1.0
MIN_RESOLUTION = 8
MAX_RESOLUTION = 1024


def has_feature_mix(width: float) -> bool:
    """Return whether the network of a width multiplier has OFA's feature mix layer.

    From 1.0 on, the head is OFA's: final expand (960 w channels), global average pooling,
    feature mix (a 1x1 convolution to 1280 w channels, h-swish) and the classifier. Below 1.0
    it is MCUNet's, without the feature mix: the classifier reads the pooled final expand. At
    0.35 the feature mix would be 150 KB of the smallest network's 319 KB of int8 weights.
    The networks (:func:`optnas.networks.supernet.build_supernet`), the cost model and the
    memory model all follow this one rule.

    Args:
        width: the width multiplier.
    """
    return float(width) >= _FEATURE_MIX_WIDTH


class MobileNetV3Space(SearchSpace):
    """The OFA MobileNetV3 space (``ofa_mbv3_d234_e346_k357``).

    Genes: ``d0..d4`` (depth per stage), ``ks0..ks19`` and ``e0..e19`` (kernel size and
    expand ratio per layer slot, four slots per stage), ``r`` (input resolution) when the
    resolution range holds more than one value, and ``w`` when the width is searched.
    Slots beyond a stage's depth are inactive; the canonical subnet stores them as the
    smallest choice.

    A supernet has one width, so a search takes ``w`` from its supernet; a ``w`` gene serves
    what the encoding alone gives (costs, memory, latency tables) across widths.

    Args:
        width_mult: the supernet's width multiplier, one of :data:`WIDTH_MULTS`.
        resolutions: the allowed input resolutions, e.g. ``range(128, 225, 4)``.
        search_width: make the width multiplier a gene: True over every one of
            :data:`WIDTH_MULTS`, or a sequence of them over those.
    """

    name = "mobilenetv3"

    def __init__(
        self,
        width_mult: float = DEFAULT_WIDTH_MULT,
        resolutions: Sequence[int] = (32,),
        search_width: bool | Sequence[float] = False,
    ) -> None:
        if float(width_mult) not in WIDTH_MULTS:
            raise ValueError(f"width multiplier must be one of {WIDTH_MULTS}, got {width_mult}")
        resolutions = sorted({int(r) for r in resolutions})
        if not resolutions or resolutions[0] < 8:
            raise ValueError(f"resolutions must be at least 8 pixels, got {resolutions}")
        self.width_mult = float(width_mult)
        self.resolutions = resolutions
        self.search_width = search_width
        if isinstance(search_width, bool):
            widths = WIDTH_MULTS if search_width else (self.width_mult,)
        else:
            widths = tuple(sorted({float(width) for width in search_width}))
            unknown = [width for width in widths if width not in WIDTH_MULTS]
            if not widths or unknown:
                raise ValueError(f"searched widths must be some of {WIDTH_MULTS}, got {list(search_width)}")
        # The widths the space's subnets take, in the order of the ``w`` gene's choices.
        self.widths: tuple[float, ...] = widths

    @classmethod
    def from_range(cls, lowest: int, highest: int, step: int, **kwargs: Any) -> MobileNetV3Space:
        """Build the space with resolutions ``range(lowest, highest + 1, step)``.

        Args:
            lowest: the lowest resolution.
            highest: the highest resolution.
            step: the step between resolutions.
            kwargs: passed to the constructor.
        """
        if lowest > highest:
            raise ValueError(f"lowest resolution {lowest} exceeds highest resolution {highest}")
        if step < 1:
            raise ValueError(f"resolution step must be positive, got {step}")
        return cls(resolutions=range(lowest, highest + 1, step), **kwargs)

    @classmethod
    def from_options(cls, options: SpaceOptions) -> MobileNetV3Space:
        lowest, highest = options.min_resolution, options.max_resolution
        if lowest < MIN_RESOLUTION or highest > MAX_RESOLUTION:
            raise OptionError("the resolution range {min_resolution} {lowest} {max_resolution} {highest} is outside "
                              "{low}..{high}", lowest=lowest, highest=highest, low=MIN_RESOLUTION, high=MAX_RESOLUTION)
        return cls.from_range(lowest, highest, options.resolution_step, width_mult=options.width_mult)

    @classmethod
    def for_subnet(cls, subnet: dict[str, Any]) -> MobileNetV3Space:
        """Build the space of the subnet's own width (1.0 if it names none) and resolution alone.

        Args:
            subnet: a subnet of this kind, canonical or not; it must name its resolution ``r``.
        """
        if "r" not in subnet:
            raise ValueError("the subnet lacks its input resolution 'r'")
        return cls(width_mult=subnet.get("w", DEFAULT_WIDTH_MULT), resolutions=[subnet["r"]])

    def distributions(self) -> dict[str, BaseDistribution]:
        genes: dict[str, BaseDistribution] = {}
        for stage in range(N_STAGES):
            genes[f"d{stage}"] = IntDistribution(DEPTHS[0], DEPTHS[-1])
        for slot in range(N_SLOTS):
            genes[f"ks{slot}"] = CategoricalDistribution(KERNEL_SIZES)
        for slot in range(N_SLOTS):
            genes[f"e{slot}"] = CategoricalDistribution(EXPAND_RATIOS)
        if len(self.resolutions) > 1:
            genes["r"] = CategoricalDistribution(tuple(self.resolutions))
        if self.search_width:
            genes["w"] = CategoricalDistribution(self.widths)
        return genes

    def decode(self, params: dict[str, Any]) -> Subnet:
        return self.canonical(
            {
                "ks": [params[f"ks{slot}"] for slot in range(N_SLOTS)],
                "e": [params[f"e{slot}"] for slot in range(N_SLOTS)],
                "d": [params[f"d{stage}"] for stage in range(N_STAGES)],
                "r": params.get("r", self.resolutions[0]),
                "w": params.get("w", self.width_mult),
            }
        )

    def encode(self, subnet: dict[str, Any]) -> dict[str, Any]:
        subnet = self.canonical(subnet)
        params: dict[str, Any] = {f"d{stage}": subnet["d"][stage] for stage in range(N_STAGES)}
        params.update({f"ks{slot}": subnet["ks"][slot] for slot in range(N_SLOTS)})
        params.update({f"e{slot}": subnet["e"][slot] for slot in range(N_SLOTS)})
        if len(self.resolutions) > 1:
            params["r"] = subnet["r"]
        if self.search_width:
            params["w"] = subnet["w"]
        return params

    def _canonical_values(self, subnet: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(subnet, dict):
            raise ValueError(f"a mobilenetv3 subnet is a JSON object, got {type(subnet).__name__}")
        missing = [key for key in ("ks", "e", "d") if key not in subnet]
        if missing:
            raise ValueError(f"mobilenetv3 subnet lacks the key(s) {missing}")
        depths = _int_list(subnet["d"], "d", DEPTHS)
        if len(depths) != N_STAGES:
            raise ValueError(f"'d' must hold {N_STAGES} depths, got {len(depths)}")
        kernels = _per_slot(_int_list(subnet["ks"], "ks", KERNEL_SIZES), depths, "ks")
        expands = _per_slot(_int_list(subnet["e"], "e", EXPAND_RATIOS), depths, "e")
        resolution = subnet.get("r")
        if resolution is None:
            if len(self.resolutions) > 1:
                raise ValueError("subnet lacks the resolution 'r' and the space has several")
            resolution = self.resolutions[0]
        if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or int(resolution) != resolution:
            raise ValueError(f"'r' must be an integer, got {resolution!r}")
        resolution = int(resolution)
        if resolution not in self.resolutions:
            raise ValueError(
                f"resolution {resolution} is outside the space's resolutions "
                f"{_describe(self.resolutions)}"
            )
        width = subnet.get("w", self.width_mult)
        if isinstance(width, bool) or not isinstance(width, (int, float)):
            raise ValueError(f"'w' must be a number, got {width!r}")
        width = float(width)
        if width not in self.widths:
            raise ValueError(f"width multiplier {width} is not in {list(self.widths)}")
        return {"ks": kernels, "e": expands, "d": depths, "r": resolution, "w": width}

    def canonical_vectors(self, vectors: np.ndarray) -> np.ndarray:
        # Vectorised: the surrogate search canonicalises whole populations at once.
        vectors = np.array(vectors, dtype=np.int64, copy=True).reshape(-1, len(self.gene_names()))
        depth = np.asarray(DEPTHS)[vectors[:, :N_STAGES]]
        layer = np.arange(N_SLOTS) % MAX_DEPTH
        inactive = layer[None, :] >= np.repeat(depth, MAX_DEPTH, axis=1)
        for offset in (N_STAGES, N_STAGES + N_SLOTS):
            block = vectors[:, offset : offset + N_SLOTS]
            block[inactive] = 0
        return vectors

    def smallest(self) -> Subnet:
        return self.canonical(
            {
                "ks": [KERNEL_SIZES[0]] * N_SLOTS,
                "e": [EXPAND_RATIOS[0]] * N_SLOTS,
                "d": [DEPTHS[0]] * N_STAGES,
                "r": self.resolutions[0],
                "w": self.widths[0],
            }
        )

    def largest(self) -> Subnet:
        return self.canonical(
            {
                "ks": [KERNEL_SIZES[-1]] * N_SLOTS,
                "e": [EXPAND_RATIOS[-1]] * N_SLOTS,
                "d": [DEPTHS[-1]] * N_STAGES,
                "r": self.resolutions[-1],
                "w": self.widths[-1],
            }
        )


def active_blocks(subnet: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """Return ``(stage, slot, kernel_size, expand_ratio)`` of every active layer, in order.

    Args:
        subnet: a canonical mobilenetv3 subnet.
    """
    blocks = []
    for stage, depth in enumerate(subnet["d"]):
        for layer in range(depth):
            slot = stage * MAX_DEPTH + layer
            blocks.append((stage, slot, subnet["ks"][slot], subnet["e"][slot]))
    return blocks


def _int_list(values: Any, key: str, allowed: Sequence[int]) -> list[int]:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"'{key}' must be a list of integers, got {values!r}")
    result = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"'{key}' holds {value!r}, not an integer")
        if int(value) not in allowed:
            raise ValueError(f"'{key}' holds {value}, allowed values are {list(allowed)}")
        result.append(int(value))
    return result


def _per_slot(values: list[int], depths: list[int], key: str) -> list[int]:
    """Expand to 20 slots (accepting the compact Σd-long form) and reset inactive slots."""
    if len(values) == N_SLOTS:
        per_slot = list(values)
    elif len(values) == sum(depths):
        # The compact form lists active layers only: place each stage's values in its own
        # slots, not in the first Σd slots (the reference's bug).
        per_slot, position = [], 0
        for depth in depths:
            stage_values = values[position : position + depth]
            position += depth
            per_slot += stage_values + [0] * (MAX_DEPTH - depth)
    else:
        raise ValueError(
            f"'{key}' must hold {N_SLOTS} values (or one per active layer, {sum(depths)}), "
            f"got {len(values)}"
        )
    smallest = min(KERNEL_SIZES) if key == "ks" else min(EXPAND_RATIOS)
    return [
        per_slot[slot] if slot % MAX_DEPTH < depths[slot // MAX_DEPTH] else smallest
        for slot in range(N_SLOTS)
    ]


def _describe(resolutions: Sequence[int]) -> str:
    if len(resolutions) == 1:
        return f"[{resolutions[0]}]"
    return f"[{resolutions[0]} .. {resolutions[-1]}] ({len(resolutions)} values)"
