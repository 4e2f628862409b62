"""Deployable files of a chosen architecture (``optnas export DIR``), checked by running them.

The network is built by :func:`optnas.networks.standalone.build_network` from ``DIR/net.subnet``
with the weights of ``DIR/final.pth`` (after ``optnas train``) or ``DIR/ckpt.pth`` (kept by
the search). The exported file takes a batch of normalised images ``image`` (N×3×r×r, any N)
and returns the class logits ``logits`` (N×classes). An early-exit network with K exits (its
intermediate exits in order, then the final one) returns ``logits_1`` .. ``logits_K``
(N×classes each), then ``confidence_1`` .. ``confidence_{K-1}`` (N each, the sigmoid of the
intermediate heads' confidence, in [0, 1]); the final exit has no confidence, since every
sample that reaches it leaves there. A deployment takes, per image, the first exit ``i`` with
``confidence_i >= epsilon_i`` (``export-<fmt>.json`` records the thresholds), else the final
one. After export the file is loaded again and run (onnxruntime for ONNX) on real test
images, and every output is compared with PyTorch's. An ONNX file is then timed in
onnxruntime at batch 1 (``latency_ms``, the median, and ``latency_p90_ms``), next to the
latency a table predicts for it (``predicted_latency_ms``) when one is given.

Every file carries what a deployment needs to read its outputs: the class names in label order
(``classes``: those the search recorded, else the dataset's; a ``folder`` dataset's class
folders) and the input's normalisation (``mean``, ``std`` of RGB pixels in [0, 1]) — in an ONNX
file's metadata (``metadata_props``), a TorchScript file's extra file ``classes.json``, and the
``export-*.json`` report of every format.

With ``int8=True`` the ONNX file is also quantized (:mod:`optnas.networks.quantization`: static QDQ,
int8 weights per channel, calibrated on ``calib_images`` training images drawn with ``seed``)
into ``net.int8.onnx`` beside it; both files are scored on the whole test split and timed the
same way, into ``export-onnx-int8.json``.

:func:`export_tflite` writes a fully-int8 TFLite flatbuffer for microcontrollers
(:mod:`optnas.networks.tflite`, calibrated on training images as the ONNX int8 file is) and
scores it in TensorFlow Lite Micro's own interpreter on the whole test split beside the float
network, with the arena TFLM used (``export-tflite-int8.json``).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optnas.artifacts import read_source, write_bytes, write_json
from optnas.boards import KB, Board
from optnas.data.catalog import recorded_classes
from optnas.data.datasets import DataSplits, load_dataset
from optnas.errors import OptionError
from optnas.latency.table import LatencyTable
from optnas.networks.early_exits import EarlyExitNetwork
from optnas.networks.onnx_export import DEFAULT_OPSET, to_onnx
from optnas.networks.quantization import calibration_indices, compare_onnx, quantize_onnx
from optnas.networks.standalone import load_chosen_network
from optnas.networks.tflite import convert_int8
from optnas.networks.tflm import ARENA_MARGIN_BYTES, TFLMRunner, arena_use, import_tflite_micro, smallest_arena

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


class _ExitOutputs(nn.Module):
    """An early-exit network with flat outputs: every exit's logits, then the heads' confidences.

    Args:
        network: the early-exit network.
    """

    def __init__(self, network: EarlyExitNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return ``logits_1..logits_K`` and ``confidence_1..confidence_{K-1}``."""
        logits, confidences = self.network(image)
        return (*logits, *(torch.sigmoid(confidence) for confidence in confidences))


def deployable(network: nn.Module) -> tuple[nn.Module, list[str]]:
    """Return the module that is exported and the names of its outputs, in order.

    Args:
        network: the network from :func:`load_chosen_network`.
    """
    if not isinstance(network, EarlyExitNetwork):
        return network, ["logits"]
    n_outputs = network.n_exits + 1
    names = [f"logits_{index}" for index in range(1, n_outputs + 1)]
    names += [f"confidence_{index}" for index in range(1, n_outputs)]
    return _ExitOutputs(network).eval(), names


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
    latency_table: str | Path | None = None,
    threads: int = 1,
    int8: bool = False,
    calib_images: int = 256,
    seed: int = 0,
    vld_size: int | None = None,
    split_seed: int | None = None,
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
        atol: largest absolute difference allowed between any output of the file and PyTorch's.
        device: where PyTorch computes the reference outputs (the file runs on the CPU).
        latency_table: a ``lut.json`` whose prediction is recorded beside the measured latency.
        threads: onnxruntime threads when the ONNX file is timed.
        int8: also write and score the int8 file (ONNX only), see :func:`export_int8`.
        calib_images: training images that calibrate the int8 file.
        seed: draws them.
        vld_size: the search's validation size, so that they come from its training split.
        split_seed: the search's seed, which chose its validation images [default: ``seed``].

    Returns:
        ``file``, ``format``, ``max_abs_diff`` (over every output), ``n_images``, ``weights``,
        ``resolution``, ``outputs`` (their names), ``classes`` and ``mean``, ``std`` (see
        :func:`deployment_labels`), ``epsilon`` (an early-exit network's thresholds); for ONNX
        ``opset``, ``latency_ms``, ``latency_p90_ms``, ``latency_threads`` and, with a table,
        ``predicted_latency_ms`` (also written to ``folder/export-<fmt>.json``); with ``int8``,
        ``int8`` holds :func:`export_int8`'s report.

    Raises:
        ValueError: bad options, missing weights or packages, or a file whose outputs differ
            from PyTorch's by more than ``atol``.
    """
    if fmt not in FORMATS:
        raise OptionError("{fmt} must be one of {formats}, got {value!r}", formats=list(FORMATS), value=fmt)
    if int8 and fmt != "onnx":
        raise OptionError("{int8} quantizes ONNX files only, not {fmt} {value}", value=fmt)
    if int8 and calib_images < 1:
        raise OptionError("{calib_images} must be at least 1, got {value}", value=calib_images)
    # A bad table is refused before minutes of exporting.
    table = LatencyTable.load(latency_table) if latency_table is not None else None
    if n_check < 1:
        raise OptionError("{n_check} must be at least 1, got {value}", value=n_check)
    folder = Path(folder)
    network, subnet, weights = load_chosen_network(folder)
    module, names = deployable(network)
    out = Path(out) if out is not None else folder / f"net{SUFFIXES[fmt]}"
    resolution = int(subnet["r"])
    data = load_dataset(dataset, data_dir)
    labels = deployment_labels(folder, dataset, data_dir, data)
    test = data.test
    images, _ = test.subset(range(min(n_check, len(test)))).tensors(resolution)
    with torch.inference_mode():
        expected = [output.cpu().numpy() for output in _outputs(module.to(device)(images.to(device)))]
    module.cpu()
    example = images[:2]
    if fmt == "onnx":
        got = _export_onnx(module, names, example, out, opset, images, labels)
    else:
        got = _export_torchscript(module, example, out, images, labels)
    difference = max(float(np.abs(file_output - reference).max()) for file_output, reference in zip(got, expected))
    if not difference <= atol:
        raise ValueError(f"{out}: outputs differ from PyTorch's by up to {difference:.3g} (> {atol:g})")
    report = {"file": str(out), "format": fmt, "max_abs_diff": difference, "n_images": len(images),
              "weights": str(weights), "resolution": resolution, "outputs": names, **labels}
    if isinstance(network, EarlyExitNetwork):
        report["epsilon"] = list(network.epsilon)
    if fmt == "onnx":
        from optnas.latency.measure import measure_onnx_file

        timing = measure_onnx_file(out, threads=threads)
        report.update(opset=opset, latency_ms=timing["latency_ms"], latency_p90_ms=timing["p90_ms"],
                      latency_threads=threads)
        if table is not None:
            report["predicted_latency_ms"] = table.predict(subnet)
    write_json(folder / f"export-{fmt}.json", report)
    if int8:
        report["int8"] = export_int8(
            folder, out, dataset=dataset, data_dir=data_dir, resolution=resolution, output_names=names,
            calib_images=calib_images, seed=seed, threads=threads, vld_size=vld_size,
            split_seed=seed if split_seed is None else split_seed)
    return report


def export_int8(
    folder: str | Path,
    float_file: str | Path,
    *,
    dataset: str,
    data_dir: str | None,
    resolution: int,
    output_names: list[str],
    calib_images: int = 256,
    seed: int = 0,
    threads: int = 1,
    vld_size: int | None = None,
    split_seed: int = 0,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Quantize an exported ONNX file to int8 and score both files on the whole test split.

    The int8 file is ``<float file>.int8.onnx`` (``net.int8.onnx``), calibrated on
    ``calib_images`` training images drawn with ``seed``; the report is written to
    ``folder/export-onnx-int8.json``.

    Args:
        folder: the chosen network's folder.
        float_file: the float ONNX file (input ``image``, outputs ``output_names``).
        dataset: dataset of the calibration (training) and test images.
        data_dir: its folder (not for digits).
        resolution: the network's input resolution.
        output_names: the file's outputs; those named ``logits*`` are scored, the last one is
            the final exit.
        calib_images: training images to calibrate on (all of them if fewer).
        seed: draws the calibration images.
        threads: onnxruntime threads when both files are timed.
        vld_size: validation images held out of the training split, as in the search.
        split_seed: the seed that chose them.
        batch_size: test images per run.

    Returns:
        ``file``, ``float_file``, ``top1_float``, ``top1_int8``, ``drop`` (points),
        ``argmax_agreement``, ``size_bytes_float``, ``size_bytes_int8``, ``size_ratio``,
        ``latency_ms_float``, ``latency_ms_int8``, ``latency_threads``, ``calib_images``,
        ``seed``, ``quant_format``, ``per_channel``, ``activation_type``, ``weight_type``,
        ``n_test_images``; for an early-exit file also ``exit_top1_float`` and
        ``exit_top1_int8`` (per exit, the final one last).
    """
    from optnas.latency.measure import measure_onnx_file

    float_file = Path(float_file)
    int8_file = float_file.with_suffix(".int8.onnx")
    splits = load_dataset(dataset, data_dir, vld_size=vld_size, seed=split_seed)
    drawn = calibration_indices(len(splits.train), calib_images, seed)
    n_calib = len(drawn)
    calibration, _ = splits.train.subset(drawn).tensors(resolution)
    settings = quantize_onnx(float_file, int8_file, calibration.numpy())
    splits.train.clear_cache()
    logits = [name for name in output_names if name.startswith("logits")]
    batches = ((images.numpy(), labels.numpy()) for images, labels in splits.test.batches(batch_size, resolution))
    scores = compare_onnx(float_file, int8_file, batches, logits)
    size_float, size_int8 = float_file.stat().st_size, int8_file.stat().st_size
    timing = {key: measure_onnx_file(path, threads=threads)["latency_ms"]
              for key, path in (("float", float_file), ("int8", int8_file))}
    report = {"file": str(int8_file), "float_file": str(float_file), "top1_float": scores["top1_float"],
              "top1_int8": scores["top1_int8"], "drop": scores["drop"],
              "argmax_agreement": scores["argmax_agreement"], "size_bytes_float": size_float,
              "size_bytes_int8": size_int8, "size_ratio": size_int8 / size_float,
              "latency_ms_float": timing["float"], "latency_ms_int8": timing["int8"], "latency_threads": threads,
              "calib_images": n_calib, "seed": seed, "quant_format": settings["quant_format"],
              "per_channel": settings["per_channel"], "activation_type": settings["activation_type"],
              "weight_type": settings["weight_type"], "n_test_images": scores["n_images"]}
    if len(logits) > 1:
        report.update(exit_top1_float=scores["exit_top1_float"], exit_top1_int8=scores["exit_top1_int8"])
    write_json(Path(folder) / "export-onnx-int8.json", report)
    return report


def export_tflite(
    folder: str | Path,
    *,
    out: str | Path | None = None,
    dataset: str = "digits",
    data_dir: str | None = None,
    calib_images: int = 256,
    seed: int = 0,
    vld_size: int | None = None,
    split_seed: int = 0,
    batch_size: int = 256,
    processes: int | None = None,
    board: Board | None = None,
) -> dict[str, Any]:
    """Write a chosen network as a fully-int8 TFLite flatbuffer and score it in TFLite Micro.

    The network is converted by :func:`optnas.networks.tflite.convert_int8`, calibrated on
    ``calib_images`` training images drawn with ``seed`` (the images ``export --int8`` calibrates
    ONNX files on), and run in TFLM's interpreter (reference kernels) image by image on the whole
    test split, beside the float network in PyTorch. Nothing is written when the network
    cannot be converted.

    Args:
        folder: a folder of ``optnas select``, trained or holding the search's ``ckpt.pth``.
        out: the file to write [default: ``folder/net.int8.tflite``].
        dataset: dataset of the calibration (training) and test images.
        data_dir: its folder (not for digits).
        calib_images: training images to calibrate on (all of them if fewer).
        seed: draws them.
        vld_size: validation images held out of the training split, as in the search.
        split_seed: the seed that chose them.
        batch_size: test images per PyTorch batch.
        processes: processes that run TFLM on shares of the test images [default: one per CPU
            core, at most 8].
        board: a target board: a network whose measured arena or file, with the board's
            reserves, exceeds its SRAM or flash is refused before scoring, and nothing is written.

    Returns:
        the report also written to ``folder/export-tflite-int8.json``: ``file``, ``format``,
        ``weights``, ``resolution``, ``top1_float``, ``top1_tflm`` (%), ``drop`` (points),
        ``agreement`` (argmax agreement of TFLM and PyTorch), ``flatbuffer_bytes``,
        ``arena_bytes`` (what TFLM's recording allocator used), ``arena_head_bytes``
        (activations), ``arena_tail_bytes`` (persistent data), ``arena_required_bytes`` (the
        smallest arena TFLM builds and runs it in: more than ``arena_bytes`` when building
        needs temporary memory beyond the final plan), ``ops`` (count per builtin operator),
        ``input`` and ``output`` (shape, type, scale, zero point), ``normalization`` (what a
        device does to pixels before quantizing them), ``n_images``, ``calib_images``,
        ``seed``, ``tflite_micro`` (its version), ``classes`` (see :func:`deployment_labels`),
        ``board`` (with a board: its name, SRAM and flash, and what the network uses of each with
        the reserves) and ``seconds`` (the whole export).

    Raises:
        ValueError: bad options, missing weights, tflite-micro absent, or a module the int8
            graph cannot express (:class:`~optnas.networks.tflite.UnsupportedModuleError`).
    """
    if calib_images < 1:
        raise OptionError("{calib_images} must be at least 1, got {value}", value=calib_images)
    version = import_tflite_micro().__version__  # before any work: a missing package is one line
    start = time.perf_counter()
    folder = Path(folder)
    network, subnet, weights = load_chosen_network(folder)
    out = Path(out) if out is not None else folder / "net.int8.tflite"
    resolution = int(subnet["r"])
    splits = load_dataset(dataset, data_dir, vld_size=vld_size, seed=split_seed)
    labels_and_stats = deployment_labels(folder, dataset, data_dir, splits)
    drawn = calibration_indices(len(splits.train), calib_images, seed)
    calibration, _ = splits.train.subset(drawn).tensors(resolution)
    model = convert_int8(network, calibration)
    splits.train.clear_cache()
    total, head, tail = arena_use(model.flatbuffer)
    required = smallest_arena(model.flatbuffer)
    fit = None if board is None else _board_fit(board, required, len(model.flatbuffer))
    labels, expected, got = [], [], []
    with TFLMRunner(model.flatbuffer, required + ARENA_MARGIN_BYTES,
                    processes or min(os.cpu_count() or 1, 8)) as runner:
        for images, batch_labels in splits.test.batches(batch_size, resolution):
            with torch.inference_mode():
                expected.append(network(images).argmax(1).numpy())
            got.append(runner(images.numpy()).argmax(1))
            labels.append(batch_labels.numpy())
    labels, expected, got = np.concatenate(labels), np.concatenate(expected), np.concatenate(got)
    n_images = len(labels)
    top1_float = 100.0 * float((expected == labels).mean())
    top1_tflm = 100.0 * float((got == labels).mean())
    test = splits.test
    report = {
        "file": str(out), "format": "tflite", "weights": str(weights), "resolution": resolution,
        "top1_float": top1_float, "top1_tflm": top1_tflm, "drop": top1_float - top1_tflm,
        "agreement": float((got == expected).mean()), "flatbuffer_bytes": len(model.flatbuffer),
        "arena_bytes": total, "arena_head_bytes": head, "arena_tail_bytes": tail, "arena_required_bytes": required,
        "ops": dict(Counter(model.ops)),
        "input": {"shape": list(model.input_shape), "layout": "NHWC", "type": "int8",
                  "scale": model.input_scale, "zero_point": model.input_zero_point},
        "output": {"shape": list(model.output_shape), "type": "int8", "scale": model.output_scale,
                   "zero_point": model.output_zero_point},
        "normalization": {"pixels": "RGB scaled to [0, 1], resized to the resolution", "mean": list(test.mean),
                          "std": list(test.std),
                          "quantize": "q = clamp(round(((pixel - mean) / std) / scale) + zero_point, -128, 127)"},
        "n_images": n_images, "calib_images": len(drawn), "seed": seed, "tflite_micro": version,
        "classes": labels_and_stats["classes"],
    }
    if fit is not None:
        report["board"] = fit
    write_bytes(out, model.flatbuffer)
    report["seconds"] = time.perf_counter() - start
    write_json(folder / "export-tflite-int8.json", report)
    return report


def deployment_labels(folder: str | Path, dataset: str, data_dir: str | None, data: DataSplits) -> dict[str, Any]:
    """Return what reads an exported network's outputs and feeds its input: ``classes``, ``mean``, ``std``.

    ``classes`` are the class names in label order that the search recorded (``folder/source.json``),
    else the dataset's (None where unknown); ``mean`` and ``std`` normalise RGB pixels in [0, 1].

    Args:
        folder: the chosen network's folder.
        dataset: the dataset the export is checked on.
        data_dir: its folder.
        data: its splits, loaded.

    Raises:
        DataError: the search's dataset is a ``folder`` tree whose classes changed since.
    """
    recorded = recorded_classes(read_source(folder), dataset, data_dir)
    classes = recorded if recorded is not None else data.classes
    return {"classes": None if classes is None else list(classes), "mean": list(data.test.mean),
            "std": list(data.test.std)}


def _board_fit(board: Board, arena_bytes: int, flatbuffer_bytes: int) -> dict[str, Any]:
    """What a network measured in TFLM uses of a board with its reserves; refuse one that does not fit."""
    over = board.excess(arena_bytes / KB, flatbuffer_bytes / KB)
    if over:
        raise OptionError("the network does not fit {board} {name}: TFLite Micro measured " + " and ".join(over),
                          name=board.name)
    sram = arena_bytes / KB + board.sram_reserve_kb
    flash = flatbuffer_bytes / KB + board.flash_reserve_kb
    return {"name": board.name, "sram_kb": board.sram_kb, "flash_kb": board.flash_kb, "sram_used_kb": sram,
            "flash_used_kb": flash}


def _outputs(result: torch.Tensor | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """A module's outputs as a list: one tensor for a plain network, several for an early-exit one."""
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _export_onnx(
    module: nn.Module, names: list[str], example: torch.Tensor, out: Path, opset: int, images: torch.Tensor,
    labels: dict[str, Any],
) -> list[np.ndarray]:
    import onnx
    import onnxruntime

    try:
        to_onnx(module, example, out, opset=opset, output_names=names)
    except (ValueError, RuntimeError) as error:
        raise OptionError("ONNX export with {opset} {value} failed: {reason}", value=opset,
                          reason=str(error).splitlines()[0]) from None
    # Metadata values are strings: JSON, as onnxruntime's session.get_modelmeta() returns them.
    model = onnx.load(str(out))
    onnx.helper.set_model_props(model, {key: json.dumps(value, ensure_ascii=False) for key, value in labels.items()})
    onnx.save(model, str(out))
    onnx.checker.check_model(str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run(names, {"image": images.numpy()})


def _export_torchscript(module: nn.Module, example: torch.Tensor, out: Path, images: torch.Tensor,
                        labels: dict[str, Any]) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        traced = torch.jit.trace(module, example)
        traced.save(str(out), _extra_files={"classes.json": json.dumps(labels, ensure_ascii=False)})
        loaded = torch.jit.load(str(out), map_location="cpu")
    with torch.inference_mode():
        return [output.numpy() for output in _outputs(loaded(images))]
