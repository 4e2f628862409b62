"""Whole networks timed end to end, in onnxruntime or PyTorch, by the device script's protocol.

The figure is what one batch-1 inference costs: one onnxruntime session call on the network
exported to ONNX (in memory), or one eager PyTorch forward under ``torch.inference_mode``.
An early-exit network runs every exit. Weights are freshly initialised: latency does not
depend on them.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optnas.latency import RUNTIMES
from optnas.latency.device import Call, TimingProtocol, onnx_call, time_calls
from optnas.latency.layers import NetworkBuilder, export_onnx


@contextlib.contextmanager
def torch_timing(threads: int) -> Iterator[None]:
    """Run PyTorch calls as they are timed: ``threads`` intra-op threads, inference mode.

    The caller's thread count is restored afterwards.

    Args:
        threads: CPU threads of PyTorch's intra-op pool.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)


def torch_call(module: nn.Module, input_shape: tuple[int, ...]) -> Call:
    """Return a call that runs a module once on a fixed random input (within :func:`torch_timing`).

    Args:
        module: the module, in eval mode.
        input_shape: its input's shape, batch included.
    """
    example = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    return lambda: module(example)


def _result(timing: dict[str, Any]) -> dict[str, Any]:
    return {"latency_ms": timing["ms"], "p90_ms": timing["p90_ms"], "repeats": timing["repeats"]}


class Measurer:
    """Times whole networks of one class count, building one supernet per width for all of them.

    Args:
        n_classes: classes of the classifier.
        runtime: ``onnxruntime`` or ``torch``.
        threads: CPU threads of the runtime.
        protocol: the timing protocol [default: :class:`~optnas.latency.device.TimingProtocol`'s].
    """

    def __init__(self, n_classes: int, runtime: str = "onnxruntime", threads: int = 1,
                 protocol: TimingProtocol | None = None) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"the latency runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
        if threads < 1:
            raise ValueError(f"the latency threads must be at least 1, got {threads}")
        self.runtime, self.threads, self.protocol = runtime, threads, protocol
        self.builder = NetworkBuilder(n_classes)

    def measure(self, subnet: dict[str, Any]) -> dict[str, Any]:
        """Return a subnet's end-to-end latency: ``latency_ms`` (median), ``p90_ms``, ``repeats``.

        Args:
            subnet: a canonical mobilenetv3 or eemobilenetv3 subnet.
        """
        network = self.builder.network(subnet)
        shape = (1, 3, int(subnet["r"]), int(subnet["r"]))
        if self.runtime == "onnxruntime":
            buffer = io.BytesIO()
            export_onnx(network, shape, buffer)
            call = onnx_call(buffer.getvalue(), self.threads)
            return _result(time_calls({"network": call}, self.protocol)["network"])
        with torch_timing(self.threads):
            return _result(time_calls({"network": torch_call(network, shape)}, self.protocol)["network"])


def measure_subnet(subnet: dict[str, Any], n_classes: int, runtime: str = "onnxruntime", threads: int = 1,
                   protocol: TimingProtocol | None = None) -> dict[str, Any]:
    """Time one subnet's whole network end to end (see :class:`Measurer` to time many).

    Args:
        subnet: a canonical mobilenetv3 or eemobilenetv3 subnet.
        n_classes: classes of the classifier.
        runtime: ``onnxruntime`` or ``torch``.
        threads: CPU threads of the runtime.
        protocol: the timing protocol.

    Returns:
        ``latency_ms`` (median), ``p90_ms`` and ``repeats``.
    """
    return Measurer(n_classes, runtime, threads, protocol).measure(subnet)


def measure_onnx_file(path: str | Path, threads: int = 1, protocol: TimingProtocol | None = None) -> dict[str, Any]:
    """Time an ONNX file at batch 1 in onnxruntime, every output fetched (all exits of an early-exit file).

    Args:
        path: the ONNX file (a dynamic batch axis is given size 1).
        threads: CPU threads of the session.
        protocol: the timing protocol.

    Returns:
        ``latency_ms`` (median), ``p90_ms`` and ``repeats``.

    Raises:
        ValueError: the file does not exist.
    """
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such ONNX file")
    return _result(time_calls({"file": onnx_call(path, threads)}, protocol)["file"])
