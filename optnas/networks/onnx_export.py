"""One way to write a PyTorch module to ONNX, shared by ``optnas export``, int8 scoring and latency tables."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import torch
from torch import nn

DEFAULT_OPSET = 17


def to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    target: str | Path | IO[bytes],
    *,
    opset: int = DEFAULT_OPSET,
    input_name: str = "image",
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
) -> None:
    """Trace a module on an example input and write it as ONNX.

    The TorchScript-based exporter is used: it covers opsets 7-20 and takes about a second
    per network, where the dynamo one needs opset 18+ and much longer.

    Args:
        module: the module, in eval mode, on the CPU.
        example: an input it traces with.
        target: a file, or a binary buffer.
        opset: ONNX opset version.
        input_name: the graph's input.
        output_names: the graph's outputs [default: the exporter's names].
        dynamic_batch: give the input and outputs a dynamic batch axis (else the example's).
    """
    names = [input_name, *(output_names or [])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice is not for users
        torch.onnx.export(
            module, (example,), target if not isinstance(target, Path) else str(target), opset_version=opset,
            input_names=[input_name], output_names=list(output_names) if output_names else None,
            dynamic_axes={name: {0: "batch"} for name in names} if dynamic_batch else None, dynamo=False,
        )
