"""The layers of a latency table as PyTorch modules, and the layer folder the device script times.

Every layer of :func:`optnas.latency.table.space_layers` is cut out of a real static subnet:
per width one supernet is built, and per kernel size and expand ratio one subnet of depth 2
in every stage is extracted, whose ``blocks[0]`` is the stem's block and whose
``blocks[1 + 2 s]`` and ``blocks[2 + 2 s]`` are stage ``s``'s first and later layer (modules
do not depend on the resolution; only their input size does). Exit heads are
:class:`~optnas.networks.early_exits.ExitHead` modules on the stage's output. Weights are the
fresh initialisation: latency does not depend on them.

A layer folder (:func:`write_layer_folder`) holds::

    manifest.json            format, n_classes, widths, resolutions, exits, layers, calibration, call_overhead
    layers/<key>.onnx        one per layer, batch 1
    calibration/<name>.onnx  whole networks of the space, timed end to end for the overhead fit
    call_overhead.onnx       a trivial model: the cost of one session call
    device.py                the device script, so the folder alone can be carried to a device
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from optnas.latency import device
from optnas.latency.device import MANIFEST_FILE, MANIFEST_FORMAT, Progress, save_json
from optnas.latency.table import backbone_layers, layer_key, space_layers
from optnas.networks.costs import stage_outputs
from optnas.networks.early_exits import ExitHead
from optnas.networks.onnx_export import to_onnx
from optnas.networks.standalone import build_network
from optnas.networks.supernet import build_supernet, extract_subnet
from optnas.spaces.mobilenetv3 import DEFAULT_WIDTH_MULT, N_SLOTS, N_STAGES, MobileNetV3Space

CALL_OVERHEAD_FILE = "call_overhead.onnx"


@dataclasses.dataclass(frozen=True)
class LayerSpace:
    """What a latency table covers and how its overhead is calibrated.

    Args:
        width_mults: the width multipliers.
        resolutions: the input resolutions.
        n_classes: classes of the classifier.
        exits: include the early-exit heads of eemobilenetv3.
        n_calibration: whole networks timed end to end to fit the overhead.
        seed: seeds the draw of those networks.
    """

    width_mults: tuple[float, ...] = (DEFAULT_WIDTH_MULT,)
    resolutions: tuple[int, ...] = (32,)
    n_classes: int = 10
    exits: bool = False
    n_calibration: int = 8
    seed: int = 0

    def layers(self) -> dict[str, dict[str, Any]]:
        """Every layer configuration of the space, by table key."""
        return space_layers(self.width_mults, self.resolutions, self.n_classes, self.exits)

    def calibration(self) -> list[dict[str, Any]]:
        """The calibration networks (see :func:`calibration_networks`)."""
        return calibration_networks(self.width_mults, self.resolutions, self.n_classes, self.n_calibration, self.seed)


class NetworkBuilder:
    """Builds the networks timed for one class count, from one supernet per width built on first use.

    Args:
        n_classes: classes of every classifier.
    """

    def __init__(self, n_classes: int) -> None:
        self.n_classes = int(n_classes)
        self._supernets: dict[float, nn.Module] = {}
        self._depth_two: dict[tuple[float, int, int], nn.Module] = {}

    def supernet(self, width: float) -> nn.Module:
        """Return the supernet of a width multiplier.

        Args:
            width: the width multiplier.
        """
        width = float(width)
        if width not in self._supernets:
            self._supernets[width] = build_supernet(self.n_classes, width)
        return self._supernets[width]

    def network(self, subnet: dict[str, Any]) -> nn.Module:
        """Return a subnet's whole network in eval mode (an early-exit one with its heads).

        Args:
            subnet: a canonical mobilenetv3 or eemobilenetv3 subnet.
        """
        return build_network(subnet, self.n_classes, self.supernet(subnet.get("w", DEFAULT_WIDTH_MULT))).eval()

    def depth_two(self, width: float, kernel: int, expand: int) -> nn.Module:
        """Return the static subnet of depth 2 in every stage with one kernel size and expand ratio.

        Args:
            width: the width multiplier.
            kernel: the kernel size of every layer.
            expand: the expand ratio of every layer.
        """
        key = (float(width), int(kernel), int(expand))
        if key not in self._depth_two:
            subnet = {"ks": [kernel] * N_SLOTS, "e": [expand] * N_SLOTS, "d": [2] * N_STAGES}
            self._depth_two[key] = extract_subnet(self.supernet(width), subnet).eval()
        return self._depth_two[key]


class _Head(nn.Module):
    """The final exit of an ofa MobileNetV3, as its ``forward`` runs it after the blocks."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.final_expand_layer = network.final_expand_layer
        self.global_avg_pool = network.global_avg_pool
        self.feature_mix_layer = network.feature_mix_layer
        self.classifier = network.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of a batch of last-stage feature maps."""
        x = self.feature_mix_layer(self.global_avg_pool(self.final_expand_layer(x)))
        return self.classifier(x.view(x.size(0), -1))


def layer_modules(
    specs: Mapping[str, dict[str, Any]], builder: NetworkBuilder | None = None
) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Return each layer's module (eval mode) and its input shape at batch 1.

    Args:
        specs: layer specifications by key, as :func:`~optnas.latency.table.space_layers` gives.
        builder: where the subnets come from [default: a new one for the specs' class count].

    Raises:
        ValueError: the specs have several class counts, or another than the builder's.
    """
    classes = {int(spec["classes"]) for spec in specs.values() if "classes" in spec}
    if builder is None:
        # Stems and elastic layers do not depend on the class count.
        builder = NetworkBuilder(next(iter(classes)) if len(classes) == 1 else 1)
    if classes - {builder.n_classes}:
        raise ValueError(f"layers of {sorted(classes)} classes cannot come from one {builder.n_classes}-class supernet")
    return {key: _layer_module(spec, builder) for key, spec in specs.items()}


def _layer_module(spec: dict[str, Any], builder: NetworkBuilder) -> tuple[nn.Module, tuple[int, ...]]:
    kind, width = spec["kind"], float(spec["w"])
    if kind == "exit":
        # Channels of a stage's output do not depend on the architecture, only on the width.
        channels = stage_outputs(MobileNetV3Space(width_mult=width).smallest())[spec["stage"]]["channels"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            head = ExitHead(channels, spec["size"], spec["classes"])
        return head.eval(), (1, channels, spec["size"], spec["size"])
    if kind == "mbconv":
        network = builder.depth_two(width, spec["k"], spec["e"])
        block = network.blocks[1 + 2 * spec["stage"] + (0 if spec["first"] else 1)]
        return block, (1, block.conv.in_channels, spec["size"], spec["size"])
    network = builder.depth_two(width, 3, 3)
    if kind == "stem":
        return nn.Sequential(network.first_conv, network.blocks[0]).eval(), (1, 3, spec["r"], spec["r"])
    if kind == "head":
        return _Head(network).eval(), (1, network.final_expand_layer.in_channels, spec["size"], spec["size"])
    raise ValueError(f"unknown layer kind {kind!r}")


def calibration_networks(
    width_mults: Iterable[float], resolutions: Iterable[int], n_classes: int, n: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Draw the whole networks whose end-to-end times fit a table's overhead.

    Uniform random mobilenetv3 subnets, spread evenly over the widths and resolutions.

    Args:
        width_mults: the width multipliers.
        resolutions: the resolutions.
        n_classes: classes of the classifier.
        n: how many networks.
        seed: seeds the draw.

    Returns:
        ``name`` (holding a digest of the subnet, so a resumed folder never reuses another's
        file), ``subnet`` and ``keys`` (its layers' table keys) per network.
    """
    rng = np.random.default_rng(seed)
    settings = [(float(width), int(resolution)) for width in width_mults for resolution in sorted(resolutions)]
    networks = []
    for index in range(n):
        width, resolution = settings[index * len(settings) // n]
        subnet = MobileNetV3Space(width_mult=width, resolutions=[resolution]).sample(rng, 1)[0]
        digest = hashlib.sha1(json.dumps(subnet, sort_keys=True).encode()).hexdigest()[:8]
        networks.append({"name": f"net{index:02d}-w{width}-r{resolution}-{digest}", "subnet": subnet,
                         "keys": [layer_key(spec) for spec in backbone_layers(subnet, n_classes)]})
    return networks


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], target: str | Path | IO[bytes]) -> None:
    """Export a module at a fixed input shape to ONNX (opset 17, input ``input``).

    Args:
        module: the module, in eval mode.
        input_shape: its input's shape, batch included.
        target: a file, or a binary buffer.
    """
    to_onnx(module, torch.zeros(input_shape), target, input_name="input", dynamic_batch=False)


def _export_once(path: Path, input_shape: tuple[int, ...], make: Callable[[], nn.Module]) -> None:
    """Export unless the file is there; a partial file never is (written aside, then renamed)."""
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    export_onnx(make(), input_shape, partial)
    os.replace(partial, path)


def write_layer_folder(
    out_dir: str | Path, space: LayerSpace = LayerSpace(), progress: Progress | None = None
) -> dict[str, Any]:
    """Write the layer folder of a space (see the module docstring); files already there are kept.

    An early-exit space is calibrated on single-exit backbones: its exit heads are layers
    like the others.

    Args:
        out_dir: the folder.
        space: the layers and calibration networks to write.
        progress: told how many files are written (stage ``export``).

    Returns:
        The manifest.
    """
    return write_folder(out_dir, space.layers(), space.calibration(), space.n_classes, progress)


def write_folder(
    out_dir: str | Path,
    specs: Mapping[str, dict[str, Any]],
    networks: list[dict[str, Any]],
    n_classes: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a layer folder of given layers and calibration networks; files already there are kept.

    Args:
        out_dir: the folder.
        specs: the layers by key, as :func:`~optnas.latency.table.space_layers` gives them.
        networks: the calibration networks, as :func:`calibration_networks` gives them.
        n_classes: classes of the classifier.
        progress: told how many files are written (stage ``export``).

    Returns:
        The manifest.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builder = NetworkBuilder(n_classes)
    total = len(specs) + len(networks)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "n_classes": int(n_classes),
        "widths": sorted({float(spec["w"]) for spec in specs.values()}),
        "resolutions": sorted({int(spec["r"]) for spec in specs.values() if spec["kind"] == "stem"}),
        "exits": any(spec["kind"] == "exit" for spec in specs.values()),
        "layers": {}, "calibration": [], "call_overhead": {"file": CALL_OVERHEAD_FILE, "input_shape": [1, 1]},
    }
    _export_once(out / CALL_OVERHEAD_FILE, (1, 1), nn.Identity)
    for done, (key, (module, shape)) in enumerate(layer_modules(specs, builder).items(), start=1):
        manifest["layers"][key] = {"file": f"layers/{key}.onnx", "input_shape": list(shape), "spec": specs[key]}
        _export_once(out / manifest["layers"][key]["file"], shape, lambda module=module: module)
        if progress:
            progress("export", done, total)
    for done, network in enumerate(networks, start=len(specs) + 1):
        shape = (1, 3, network["subnet"]["r"], network["subnet"]["r"])
        record = {"name": network["name"], "file": f"calibration/{network['name']}.onnx", "input_shape": list(shape),
                  "subnet": network["subnet"], "keys": network["keys"]}
        manifest["calibration"].append(record)
        _export_once(out / record["file"], shape, lambda subnet=network["subnet"]: builder.network(subnet))
        if progress:
            progress("export", done, total)
    shutil.copyfile(device.__file__, out / "device.py")
    save_json(out / MANIFEST_FILE, manifest)
    return manifest
