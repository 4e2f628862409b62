"""Building a latency table on this machine, in onnxruntime or PyTorch (``optnas latency table``).

onnxruntime: the layer folder is written and timed by the device script's own code, so a
table built here and one built on a device by ``device.py`` are made the same way. PyTorch:
the same layers, as modules, and the same calibration networks are timed by the same
protocol and assembled into the same format, with ``runtime`` ``torch``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optnas.latency import RUNTIMES
from optnas.latency.device import (
    Call,
    Progress,
    TimingProtocol,
    stderr_progress,
    time_layer_folder,
    time_table,
)
from optnas.latency.layers import LayerSpace, NetworkBuilder, layer_modules, write_layer_folder
from optnas.latency.measure import torch_call, torch_timing


def build_table(
    out: str | Path,
    space: LayerSpace = LayerSpace(),
    runtime: str = "onnxruntime",
    threads: int = 1,
    progress: bool | Progress = True,
    work_dir: str | Path | None = None,
    protocol: TimingProtocol | None = None,
) -> dict[str, Any]:
    """Time every layer of a space on this machine and write its latency table (``lut.json``).

    An existing ``out`` timed under the same conditions is continued: only missing entries are timed.

    Args:
        out: the table file.
        space: the layers and calibration networks to time.
        runtime: ``onnxruntime`` or ``torch``.
        threads: CPU threads of the runtime.
        progress: True for ``k/n`` lines on stderr, or a callback, or False.
        work_dir: onnxruntime: where the layer folder is written (and kept; files there are
            reused) [default: a temporary folder].
        protocol: the timing protocol.

    Returns:
        The table written.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"the latency runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if threads < 1:
        raise ValueError(f"the latency threads must be at least 1, got {threads}")
    report = stderr_progress if progress is True else (progress or None)
    if runtime == "onnxruntime":
        with _folder(work_dir) as folder:
            write_layer_folder(folder, space, report)
            return time_layer_folder(folder, out, threads, protocol=protocol, progress=report)
    specs = space.layers()
    builder = NetworkBuilder(space.n_classes)
    # Modules are built when the first missing layer is timed: a complete table needs none.
    modules = cache(partial(layer_modules, specs, builder))

    def layer_call(key: str) -> Call:
        return torch_call(*modules()[key])

    def network_call(subnet: dict[str, Any]) -> Call:
        return torch_call(builder.network(subnet), (1, 3, subnet["r"], subnet["r"]))

    calibration = [{"name": network["name"], "keys": network["keys"], "make": partial(network_call, network["subnet"])}
                   for network in space.calibration()]
    header = {"runtime": "torch", "runtime_version": torch.__version__, "threads": threads,
              "n_classes": int(space.n_classes), "widths": sorted({float(w) for w in space.width_mults}),
              "resolutions": sorted({int(r) for r in space.resolutions}), "exits": bool(space.exits)}
    with torch_timing(threads):
        return time_table(out, header, {key: partial(layer_call, key) for key in specs}, calibration,
                          partial(torch_call, nn.Identity(), (1, 1)), protocol=protocol, progress=report)


@contextlib.contextmanager
def _folder(work_dir: str | Path | None) -> Iterator[Path]:
    if work_dir is not None:
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="optnas-layers-") as folder:
        yield Path(folder)
