"""Deployable files of a chosen architecture (``optnas export DIR``), checked by running them.

The network is built by :func:`optnas.final_training.build_network` from ``DIR/net.subnet``
with the weights of ``DIR/final.pth`` (after ``optnas train``) or ``DIR/ckpt.pth`` (kept by
the search). The exported file takes a batch of normalised images ``image`` (N×3×r×r, any N)
and returns the class logits ``logits`` (N×classes). After export it is loaded again and run
(onnxruntime for ONNX) on real test images, and its outputs are compared with PyTorch's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optnas.final_training import (
    FINAL_FILE, SEARCH_CHECKPOINT, build_network, check_supported, load_weights, read_subnet,
)

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
_CLASSIFIER_WEIGHT = "classifier.linear.weight"


def load_chosen_network(folder: str | Path) -> tuple[nn.Module, dict[str, Any], Path]:
    """Return the trained network of a chosen architecture, its subnet and its weight file.

    Args:
        folder: a folder of ``optnas select`` (``final.pth`` is preferred over ``ckpt.pth``).
    """
    folder = Path(folder)
    subnet = read_subnet(folder)
    check_supported(subnet)
    weights = next((folder / name for name in (FINAL_FILE, SEARCH_CHECKPOINT) if (folder / name).is_file()), None)
    if weights is None:
        raise ValueError(f"{folder} holds no weights ({FINAL_FILE} or {SEARCH_CHECKPOINT}): run `optnas train {folder}` first")
    state = torch.load(weights, map_location="cpu", weights_only=True).get("state_dict", {})
    if _CLASSIFIER_WEIGHT not in state:
        raise ValueError(f"{weights}: not a checkpoint of a MobileNetV3 subnet (no {_CLASSIFIER_WEIGHT})")
    network = build_network(subnet, int(state[_CLASSIFIER_WEIGHT].shape[0]))
    load_weights(network, weights)
    return network.eval(), subnet, weights


def export_network(
    folder: str | Path,
    fmt: str,
    *,
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    dataset: str = "digits",
    data_dir: str | None = None,
    n_check: int = 64,
    atol: float = 1e-4,
    device: str = "cpu",
) -> dict[str, Any]:
    """Export a chosen network and check the file against PyTorch on real test images.

    Args:
        folder: a folder of ``optnas select``, trained or holding the search's ``ckpt.pth``.
        fmt: ``onnx`` or ``torchscript``.
        out: the file to write [default: ``folder/net.onnx`` or ``folder/net.pt``].
        opset: ONNX opset version.
        dataset: dataset whose test images check the export.
        data_dir: its folder (not for digits).
        n_check: test images to check on.
        atol: largest absolute difference of logits allowed between the file and PyTorch.
        device: where PyTorch computes the reference outputs (the file runs on the CPU).

    Returns:
        ``file``, ``format``, ``max_abs_diff``, ``n_images``, ``weights`` (also written to
        ``folder/export-<fmt>.json``).

    Raises:
        ValueError: bad options, missing weights or packages, or a file whose outputs differ
            from PyTorch's by more than ``atol``.
    """
    from optnas.data import load_dataset

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    if n_check < 1:
        raise ValueError(f"--n-check must be at least 1, got {n_check}")
    folder = Path(folder)
    network, subnet, weights = load_chosen_network(folder)
    out = Path(out) if out is not None else folder / f"net{SUFFIXES[fmt]}"
    resolution = int(subnet["r"])
    test = load_dataset(dataset, data_dir).test
    images, _ = test.subset(range(min(n_check, len(test)))).tensors(resolution)
    with torch.inference_mode():
        expected = network.to(device)(images.to(device)).cpu().numpy()
    network.cpu()
    example = images[:2]
    if fmt == "onnx":
        got = _export_onnx(network, example, out, opset, images)
    else:
        got = _export_torchscript(network, example, out, images)
    difference = float(np.abs(got - expected).max())
    if not difference <= atol:
        raise ValueError(f"{out}: outputs differ from PyTorch's by up to {difference:.3g} (> {atol:g})")
    report = {"file": str(out), "format": fmt, "max_abs_diff": difference, "n_images": len(images),
              "weights": str(weights), "resolution": resolution}
    if fmt == "onnx":
        report["opset"] = opset
    (folder / f"export-{fmt}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _export_onnx(network: nn.Module, example: torch.Tensor, out: Path, opset: int, images: torch.Tensor) -> np.ndarray:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ValueError("ONNX export needs onnx and onnxruntime: pip install 'optnas[export]'") from None
    with warnings.catch_warnings():
        # The TorchScript-based exporter: opsets 7-20 and a second per network, where the
        # dynamo one needs opset 18+ and much longer; its deprecation notice is not for users.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                network, (example,), str(out), opset_version=opset, input_names=["image"],
                output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                dynamo=False,
            )
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"ONNX export with --opset {opset} failed: {str(error).splitlines()[0]}") from None
    onnx.checker.check_model(str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": images.numpy()})[0]


def _export_torchscript(network: nn.Module, example: torch.Tensor, out: Path, images: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        traced = torch.jit.trace(network, example)
        traced.save(str(out))
        loaded = torch.jit.load(str(out), map_location="cpu")
    with torch.inference_mode():
        return loaded(images).numpy()
