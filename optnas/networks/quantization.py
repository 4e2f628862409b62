"""Static int8 post-training quantization of an exported ONNX file, and its accuracy beside the float one.

:func:`quantize_onnx` runs onnxruntime's recommended pre-processing (shape inference and graph
optimisation, :func:`onnxruntime.quantization.shape_inference.quant_pre_process`), then
:func:`onnxruntime.quantization.quantize_static` in the QDQ format: weights int8 per output
channel, activations uint8 with MinMax ranges calibrated on real images. Every output of the
graph is kept (all exits of an early-exit network). :func:`onnx_top1` and :func:`compare_onnx`
run files on labelled images in batches.

A search with ``--int8`` scores every candidate with :func:`int8_top1`: the network exported
to ONNX (:func:`export_onnx_file`, as ``optnas export`` writes it), quantized by
:func:`quantize_onnx` on the training images :func:`calibration_indices` draws, and run on the
validation images.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optnas.networks.onnx_export import to_onnx

QUANT_FORMAT = "QDQ"
# Activations uint8, weights int8 (U8S8). onnxruntime's CPU provider (1.32) fuses every QDQ group
# of these networks into integer kernels only with uint8 activations: QLinearConv for the
# depthwise convolutions too, QLinearAdd/QLinearMul for the residuals, hard-swish and SE scales.
# With int8 activations (S8S8) it left the 29 depthwise convolutions and the Add/Mul nodes in
# float between Dequantize/QuantizeLinear pairs: the int8 file of the test network took 3.1 ms
# at batch 1 against 0.41 ms with uint8 activations and 1.5 ms in float (AMD EPYC, AVX512-VNNI),
# at the same accuracy. On x86 CPUs without VNNI, U8S8 products can saturate (VPMADDUBSW);
# the measured ``drop`` shows it if it ever matters.
ACTIVATION_TYPE = "QUInt8"
WEIGHT_TYPE = "QInt8"


class _ImageReader:
    """Calibration batches for :func:`quantize_static`: ``{input_name: batch}`` until exhausted.

    Args:
        images: N×3×r×r float32 normalised images.
        input_name: the graph's input.
        batch_size: images per batch.
    """

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int) -> None:
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.input_name = input_name
        self.batch_size = batch_size
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Return the next batch, or None after the last."""
        return next(self._batches, None)

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {self.input_name: self.images[start : start + self.batch_size]}
            for start in range(0, len(self.images), self.batch_size))


def quantize_onnx(
    float_path: str | Path,
    int8_path: str | Path,
    calibration_images: np.ndarray,
    *,
    input_name: str = "image",
    batch_size: int = 32,
    per_channel: bool = True,
    preprocess: bool = True,
) -> dict[str, Any]:
    """Write a statically quantized (QDQ, int8) copy of an ONNX file, calibrated on images.

    Args:
        float_path: the float ONNX file.
        int8_path: the quantized file to write.
        calibration_images: N×3×r×r normalised images (N >= 1) whose activation ranges
            (MinMax) set the activations' scales.
        input_name: the graph's image input.
        batch_size: images per calibration batch.
        per_channel: one weight scale per output channel (else one per tensor).
        preprocess: run ``quant_pre_process`` first (shape inference, graph optimisation).

    Returns:
        ``quant_format``, ``per_channel``, ``activation_type``, ``weight_type``,
        ``calib_images``, ``preprocessed``.

    Raises:
        ValueError: no calibration image.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_images) < 1:
        raise ValueError("int8 quantization needs at least one calibration image")

    class Reader(_ImageReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(float_path)
        if preprocess:
            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(str(source), str(prepared))
            source = prepared
        quantize_static(
            str(source), str(int8_path), Reader(calibration_images, input_name, batch_size),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=getattr(QuantType, ACTIVATION_TYPE), weight_type=getattr(QuantType, WEIGHT_TYPE),
        )
    return {"quant_format": QUANT_FORMAT, "per_channel": per_channel, "activation_type": ACTIVATION_TYPE,
            "weight_type": WEIGHT_TYPE, "calib_images": len(calibration_images), "preprocessed": preprocess}


def _session(path: str | Path, threads: int | None = None) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_top1(
    path: str | Path, images: np.ndarray, labels: np.ndarray, output_names: list[str], batch_size: int = 256,
    threads: int | None = None,
) -> tuple[list[float], list[np.ndarray]]:
    """Run an ONNX file on labelled images in batches: each output's top1 and argmax.

    Args:
        path: the ONNX file (input ``image``).
        images: N×3×r×r normalised images.
        labels: the N class indices.
        output_names: the logits outputs scored.
        batch_size: images per run.
        threads: onnxruntime's threads [default: its own choice, every core].

    Returns:
        The top1 (%) of every output, in order, and the argmax (N) of every output.
    """
    session = _session(path, threads)
    predictions: list[list[np.ndarray]] = [[] for _ in output_names]
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
        for found, output in zip(predictions, session.run(output_names, {"image": batch})):
            found.append(output.argmax(axis=1))
    argmaxes = [np.concatenate(found) for found in predictions]
    labels = np.asarray(labels)
    return [100.0 * float((argmax == labels).mean()) for argmax in argmaxes], argmaxes


def compare_onnx(
    float_path: str | Path, int8_path: str | Path, batches: Iterable[tuple[np.ndarray, np.ndarray]],
    output_names: list[str],
) -> dict[str, Any]:
    """Score a float file and its int8 copy on the same labelled batches.

    Args:
        float_path: the float ONNX file.
        int8_path: its quantized copy.
        batches: (images N×3×r×r, labels N) batches, e.g. the whole test split.
        output_names: the logits outputs, the final exit last.

    Returns:
        ``exit_top1_float``, ``exit_top1_int8`` (% per output), ``top1_float``, ``top1_int8``
        (the last output's), ``drop`` (points), ``argmax_agreement`` (share of images whose
        last output's argmax is the same in both files), ``n_images``.
    """
    sessions = [_session(float_path), _session(int8_path)]
    correct = np.zeros((2, len(output_names)))
    agree = n_images = 0
    for images, labels in batches:
        feed = {"image": np.ascontiguousarray(images, dtype=np.float32)}
        argmaxes = [np.stack([output.argmax(axis=1) for output in session.run(output_names, feed)])
                    for session in sessions]
        correct += np.stack([(argmax == np.asarray(labels)[None]).sum(axis=1) for argmax in argmaxes])
        agree += int((argmaxes[0][-1] == argmaxes[1][-1]).sum())
        n_images += len(labels)
    if n_images == 0:
        raise ValueError("no test image to compare the float and int8 files on")
    top1 = (100.0 * correct / n_images).tolist()
    return {"exit_top1_float": top1[0], "exit_top1_int8": top1[1], "top1_float": top1[0][-1],
            "top1_int8": top1[1][-1], "drop": top1[0][-1] - top1[1][-1], "argmax_agreement": agree / n_images,
            "n_images": n_images}


def calibration_indices(n_train: int, n_images: int, seed: int) -> np.ndarray:
    """Return the training images that calibrate an int8 network, sorted: ``optnas export
    --int8`` and ``optnas search --int8`` draw the same ones for the same split and seed.

    Args:
        n_train: images in the training split.
        n_images: images to draw (all of them if fewer).
        seed: draws them.
    """
    return np.sort(np.random.default_rng(seed).choice(n_train, min(n_images, n_train), replace=False))


def export_onnx_file(
    model: nn.Module, path: str | Path, example: torch.Tensor, *, opset: int = 17,
    input_name: str = "image", output_name: str = "logits",
) -> None:
    """Write a single-output network to ONNX as ``optnas export`` does: batch axis dynamic.

    The network is copied to the CPU in evaluation mode; ``model`` is left as it was.

    Args:
        model: the network (N×3×r×r images → N×classes logits).
        path: the file to write.
        example: a batch of images the export traces with.
        opset: ONNX opset version.
        input_name: the graph's input.
        output_name: the graph's output.
    """
    module = copy.deepcopy(model).cpu().eval()
    to_onnx(module, example.cpu(), path, opset=opset, input_name=input_name, output_names=[output_name])


def int8_top1(
    model: nn.Module, calibration_images: np.ndarray, images: np.ndarray, labels: np.ndarray, *,
    opset: int = 17, threads: int | None = None,
) -> float:
    """Return the top1 (%) of a network after the static int8 quantization of ``optnas export --int8``.

    The network is exported to ONNX in a temporary folder, quantized by :func:`quantize_onnx`
    (QDQ, int8 per-channel weights, uint8 activations) on ``calibration_images``, and the int8
    file is run on the labelled images in onnxruntime.

    Args:
        model: a single-output network (left unchanged).
        calibration_images: N×3×r×r normalised training images (N >= 1).
        images: M×3×r×r normalised images to score on.
        labels: their M class indices.
        opset: ONNX opset version.
        threads: onnxruntime's threads when scoring.
    """
    if len(calibration_images) < 1:
        raise ValueError("int8 quantization needs at least one calibration image")
    with tempfile.TemporaryDirectory(prefix="optnas-int8-") as scratch:
        float_path, int8_path = Path(scratch) / "net.onnx", Path(scratch) / "net.int8.onnx"
        example = torch.as_tensor(np.ascontiguousarray(calibration_images[:2], dtype=np.float32))
        export_onnx_file(model, float_path, example, opset=opset)
        quantize_onnx(float_path, int8_path, calibration_images)
        top1, _ = onnx_top1(int8_path, images, labels, ["logits"], threads=threads)
    return top1[0]
