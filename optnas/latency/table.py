"""Latency tables: a subnet's latency predicted from its encoding as the sum of its layers' times.

A table (``lut.json``) holds the measured time of every layer configuration the MobileNetV3
space can produce, keyed by :func:`layer_key`, plus an *overhead*: what running a whole
network costs beyond its layers (one session call instead of one per layer, memory
traffic between layers), fitted on a few end-to-end measurements stored in the table. A
subnet's predicted latency is the sum of its layers' entries plus that overhead, so it is
computed from the encoding in microseconds and the surrogate sampler treats it as an exact
cost, like MACs.

Layers (``w`` the width multiplier, ``s`` the 0-based stage, ``i`` the input side):

``stem-w{w}-r{r}``
    The first convolution and the first block, on the ``3 x r x r`` image.
``mbconv-w{w}-s{s}-{first|rest}-k{k}-e{e}-i{i}``
    An elastic layer: a stage's first (strided) layer or a later one, kernel ``k``, expand ratio ``e``.
``head-w{w}-i{i}-c{c}``
    The final expand, pooling, feature mix and classifier with ``c`` classes.
``exit-w{w}-s{s}-i{i}-c{c}``
    An early-exit head after stage ``s``.

Times are milliseconds at batch 1, medians of repeated runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

# The table format and the overhead fit live in the device script, which runs without optnas.
from optnas.errors import OptionError
from optnas.latency.device import TABLE_FORMAT, fit_overhead  # noqa: F401
from optnas.networks.costs import (
    Layer,
    gather_parts,
    layers,
    mobilenetv3_subnet,
    part_tables,
    slot_genes,
    stage_outputs,
)
from optnas.spaces.mobilenetv3 import (
    DEPTHS,
    EXPAND_RATIOS,
    KERNEL_SIZES,
    N_STAGES,
    MobileNetV3Space,
)


class LatencyTableError(OptionError):
    """A latency table that cannot be read, or that lacks what a subnet needs; its hints name the
    options of the table's builder (:class:`~optnas.latency.layers.LayerSpace`'s ``n_classes``, ``exits``)."""


def layer_key(spec: dict[str, Any]) -> str:
    """Return the table key of a layer specification (see the module docstring).

    Args:
        spec: ``kind`` (stem, mbconv, head or exit) and that kind's fields.
    """
    kind, width = spec["kind"], float(spec["w"])
    if kind == "stem":
        return f"stem-w{width}-r{spec['r']}"
    if kind == "mbconv":
        place = "first" if spec["first"] else "rest"
        return f"mbconv-w{width}-s{spec['stage']}-{place}-k{spec['k']}-e{spec['e']}-i{spec['size']}"
    if kind == "head":
        return f"head-w{width}-i{spec['size']}-c{spec['classes']}"
    if kind == "exit":
        return f"exit-w{width}-s{spec['stage']}-i{spec['size']}-c{spec['classes']}"
    raise ValueError(f"unknown layer kind {kind!r}")


def _mbconv_spec(width: float, layer: Layer) -> dict[str, Any]:
    return {"kind": "mbconv", "w": width, "stage": layer.stage, "first": layer.first,
            "k": layer.kernel, "e": layer.expand, "size": layer.size}


def backbone_layers(subnet: dict[str, Any], n_classes: int) -> list[dict[str, Any]]:
    """Return the specifications of the layers a single-exit subnet runs, in order.

    Args:
        subnet: a mobilenetv3 subnet (an eemobilenetv3 one gives its backbone's).
        n_classes: classes of the classifier.
    """
    backbone = mobilenetv3_subnet(subnet).backbone()
    walk = layers(backbone)
    width = float(backbone["w"])
    # The last stage's last layer does not stride (depths are at least 2): its side is the head's.
    final_size = walk[-1].size
    return [
        {"kind": "stem", "w": width, "r": int(backbone["r"])},
        *(_mbconv_spec(width, layer) for layer in walk),
        {"kind": "head", "w": width, "size": final_size, "classes": int(n_classes)},
    ]


def exit_layers(subnet: dict[str, Any], n_classes: int) -> list[dict[str, Any]]:
    """Return the specifications of an eemobilenetv3 subnet's intermediate exit heads, in order.

    Args:
        subnet: an eemobilenetv3 subnet.
        n_classes: classes of the task.
    """
    subnet = mobilenetv3_subnet(subnet)
    outputs = stage_outputs(subnet)
    width = float(subnet["w"])
    return [
        {"kind": "exit", "w": width, "stage": stage, "size": outputs[stage]["size"], "classes": int(n_classes)}
        for stage in subnet.exit_stages
    ]


def space_layers(
    width_mults: Iterable[float], resolutions: Iterable[int], n_classes: int, exits: bool = False
) -> dict[str, dict[str, Any]]:
    """Return every layer configuration subnets of a space can run, by key.

    Args:
        width_mults: the width multipliers.
        resolutions: the input resolutions.
        n_classes: classes of the classifier.
        exits: include the early-exit heads of eemobilenetv3.
    """
    specs: dict[str, dict[str, Any]] = {}
    for width in width_mults:
        for resolution in resolutions:
            space = MobileNetV3Space(width_mult=width, resolutions=[resolution])
            # Depth 2 in every stage holds each stage's first and one later layer; nine
            # kernel/expand pairs cover every configuration at this resolution.
            for kernel in KERNEL_SIZES:
                for expand in EXPAND_RATIOS:
                    subnet = space.canonical(
                        {"ks": [kernel] * 20, "e": [expand] * 20, "d": [DEPTHS[0]] * N_STAGES, "r": resolution}
                    )
                    for spec in backbone_layers(subnet, n_classes):
                        specs.setdefault(layer_key(spec), spec)
            if exits:
                outputs = stage_outputs(space.smallest())
                for stage in range(N_STAGES - 1):
                    spec = {"kind": "exit", "w": float(width), "stage": stage,
                            "size": outputs[stage]["size"], "classes": int(n_classes)}
                    specs.setdefault(layer_key(spec), spec)
    return specs


class LatencyTable:
    """A latency table read from ``lut.json`` (see the module docstring).

    Args:
        data: the table's JSON object.
        source: where it was read from, for error messages.
    """

    def __init__(self, data: dict[str, Any], source: str = "the latency table") -> None:
        self.source = source
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise LatencyTableError("{source}: not an optnas latency table (format {format})", source=source,
                                    format=TABLE_FORMAT)
        try:
            self.layers = {str(key): float(entry["ms"]) for key, entry in data["layers"].items()}
            self.overhead_ms = float(data.get("overhead_ms", 0.0))
            self.n_classes = int(data["n_classes"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise LatencyTableError("{source}: malformed latency table ({error!r})", source=source,
                                    error=error) from None
        bad = [key for key, ms in self.layers.items() if not (math.isfinite(ms) and ms >= 0)]
        if bad or not math.isfinite(self.overhead_ms):
            raise LatencyTableError("{source}: latencies must be finite and >= 0 (see {bad})", source=source,
                                    bad=bad[:3] or "overhead_ms")
        self.data = data

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table file.

        Args:
            path: the ``lut.json`` file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LatencyTableError("{path}: no such latency table (build one with `optnas latency table`)",
                                    path=path) from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise LatencyTableError("{path}: not a JSON latency table ({error})", path=path, error=error) from None
        return cls(data, str(path))

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything the table records besides its entries: runtime, threads, device, date."""
        return {key: value for key, value in self.data.items() if key not in ("layers", "calibration")}

    def _sum(self, specs: Iterable[dict[str, Any]]) -> float:
        total = 0.0
        for spec in specs:
            key = layer_key(spec)
            if key not in self.layers:
                raise _missing(self.source, key, spec, self.n_classes)
            total += self.layers[key]
        return total

    def predict(self, subnet: dict[str, Any]) -> float:
        """Return a subnet's predicted latency (ms): its layers' sum plus the overhead.

        An eemobilenetv3 subnet's is that of its whole network, every exit head run.

        Args:
            subnet: a canonical mobilenetv3 or eemobilenetv3 subnet.
        """
        subnet = mobilenetv3_subnet(subnet)
        total = self._sum(backbone_layers(subnet, self.n_classes))
        if subnet.has_exits:
            total += self._sum(exit_layers(subnet, self.n_classes))
        return total + self.overhead_ms

    def predict_vectors(self, space: MobileNetV3Space) -> Callable[[np.ndarray], np.ndarray]:
        """Return :meth:`predict` for whole arrays of gene vectors of a space, with the same figures.

        Every entry a subnet of the space may read is looked up once here; each call gathers
        them and adds them in the order :meth:`predict` does, so the sums are equal to the bit.

        Args:
            space: a mobilenetv3 space (not an early-exit one: its exit heads are not modelled).

        Returns:
            A function of an int array (n, n_genes) of gene vectors giving the latencies (ms),
            an array (n,); it raises :class:`LatencyTableError` for a subnet the table lacks
            an entry of, as :meth:`predict` does.
        """

        def entry(spec: dict[str, Any]) -> tuple[float]:
            # A missing entry fails only the subnets that run the layer (NaN marks it).
            return (self.layers.get(layer_key(spec), math.nan),)

        n_classes = self.n_classes
        tables = part_tables(
            space,
            lambda width, resolution: entry({"kind": "stem", "w": width, "r": resolution}),
            lambda width, layer: entry(_mbconv_spec(width, layer)),
            lambda width, size: entry({"kind": "head", "w": width, "size": size, "classes": n_classes}),
        )

        def latencies(vectors: np.ndarray) -> np.ndarray:
            parts = gather_parts(tables, slot_genes(space, vectors))[0]
            # Part after part, as predict adds them: the sums are equal to the bit.
            total = np.zeros(parts.shape[1])
            for part in parts:
                total += part
            missing = np.flatnonzero(np.isnan(total))
            if len(missing):
                # Raises the error predict raises for the first such subnet.
                self.predict(space.from_vector(np.asarray(vectors).reshape(parts.shape[1], -1)[missing[0]]))
            return total + self.overhead_ms

        return latencies

    def exit_latencies(self, subnet: dict[str, Any]) -> list[float]:
        """Return the latency (ms) to leave at each exit of an eemobilenetv3 subnet, final included.

        Like ``exit_macs``: the backbone up to the exit's stage plus every head passed, its own
        included, plus the overhead.

        Args:
            subnet: a canonical eemobilenetv3 subnet.
        """
        subnet = mobilenetv3_subnet(subnet)
        specs = backbone_layers(subnet, self.n_classes)
        heads = [self._sum([spec]) for spec in exit_layers(subnet, self.n_classes)]
        result = []
        for index, stage in enumerate(subnet.exit_stages):
            through_stage = [spec for spec in specs[1:-1] if spec["stage"] <= stage]
            result.append(self._sum([specs[0], *through_stage]) + sum(heads[: index + 1]) + self.overhead_ms)
        result.append(self._sum(specs) + sum(heads) + self.overhead_ms)
        return result

    def fastest(self, width_mults: Iterable[float], resolutions: Iterable[int]) -> tuple[float, dict[str, Any]]:
        """Return the lowest predicted latency (ms) of a space's single-exit subnets, and a subnet with it.

        A layer's input side depends on the resolution and its stage only, so at each width and
        resolution the fastest subnet takes, per stage, the fastest first layer and the fastest
        later one at the smallest depth (entries are never negative).

        Args:
            width_mults: the space's width multipliers.
            resolutions: its resolutions.
        """
        best: tuple[float, dict[str, Any]] | None = None
        for width in width_mults:
            for resolution in resolutions:
                space = MobileNetV3Space(width_mult=width, resolutions=[resolution])
                kernels, expands = [KERNEL_SIZES[0]] * 20, [EXPAND_RATIOS[0]] * 20
                base = space.canonical({"ks": kernels, "e": expands, "d": [DEPTHS[0]] * N_STAGES, "r": resolution})
                for layer in layers(base):
                    slot = layer.stage * 4 + (0 if layer.first else 1)
                    _, kernels[slot], expands[slot] = min(
                        (self._sum([_mbconv_spec(width, layer._replace(kernel=k, expand=e))]), k, e)
                        for k in KERNEL_SIZES for e in EXPAND_RATIOS
                    )
                subnet = space.canonical({**base, "ks": kernels, "e": expands})
                latency = self.predict(subnet)
                if best is None or latency < best[0]:
                    best = (latency, subnet)
        assert best is not None
        return best

    def check_covers(self, width_mults: Iterable[float], resolutions: Iterable[int], n_classes: int,
                     exits: bool = False) -> None:
        """Refuse a table that lacks a layer some subnet of a space runs.

        Args:
            width_mults: the space's width multipliers.
            resolutions: its resolutions.
            n_classes: classes of the classifier.
            exits: whether the space has early-exit heads.
        """
        if n_classes != self.n_classes:
            raise LatencyTableError(
                "{source} was built for {built} classes, the search has {count}: rebuild it with {n_classes} {count}",
                source=self.source, built=self.n_classes, count=n_classes,
            )
        for key, spec in space_layers(width_mults, resolutions, n_classes, exits).items():
            if key not in self.layers:
                raise _missing(self.source, key, spec, n_classes)


def _missing(source: str, key: str, spec: dict[str, Any], n_classes: int) -> LatencyTableError:
    """The error for a table without the entry ``key`` (of layer ``spec``): how to rebuild it."""
    if spec.get("classes", n_classes) != n_classes:
        hint = "rebuild it with {n_classes} {count}"
    else:
        hint = "rebuild it for width {width}, the search's resolutions" + (
            " and its exit heads ({exits})" if spec["kind"] == "exit" else "")
    return LatencyTableError("{source} has no entry {key}; " + hint, source=source, key=key,
                             count=spec.get("classes"), width=spec.get("w"))

