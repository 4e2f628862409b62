"""`optnas export --int8`: a statically quantized ONNX file that tracks the float one, and its report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from optnas.data.datasets import DataSplits
from optnas.export import export_network
from optnas.networks.inference import recalibrate_bn
from optnas.networks.supernet import extract_subnet
from optnas.spaces import MobileNetV3Space
from tests.conftest import invoke_cli
from tests.test_export import SUBNET, chosen_early_exit  # noqa: F401  (a fixture)

FIELDS = {"file", "float_file", "top1_float", "top1_int8", "drop", "argmax_agreement", "size_bytes_float",
          "size_bytes_int8", "size_ratio", "latency_ms_float", "latency_ms_int8", "calib_images", "seed",
          "quant_format", "per_channel"}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, supernet: torch.nn.Module, digits: DataSplits) -> Path:
    """A chosen network whose BN statistics are recomputed on digits: untrained, but its logits depend
    on the image (with test_export's random statistics they are the same for every image)."""
    subnet = MobileNetV3Space(resolutions=(28,)).canonical(SUBNET)
    network = extract_subnet(supernet, subnet)
    recalibrate_bn(network, digits.train, resolution=28, n_images=400)
    folder = tmp_path_factory.mktemp("calibrated")
    (folder / "net.subnet").write_text(json.dumps(subnet))
    torch.save({"state_dict": network.state_dict(), "subnet": dict(subnet)}, folder / "ckpt.pth")
    return folder


@pytest.fixture(scope="module")
def int8_export(calibrated: Path) -> subprocess.CompletedProcess:
    """`optnas export --int8` on it, with a --max-drop that any result exceeds (-100 points)."""
    return invoke_cli("export", str(calibrated), "--int8", "--n-check", "8", "--calib-images", "128",
                      "--seed", "3", "--max-drop", "-100")


def test_int8_file_holds_quantized_operators(calibrated: Path, int8_export: subprocess.CompletedProcess) -> None:
    assert int8_export.returncode == 0, int8_export.stderr
    model = onnx.load(str(calibrated / "net.int8.onnx"))
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    # Every convolution and the classifier take an int8 weight through a DequantizeLinear node,
    # with one scale per output channel.
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    weighted = [node for node in model.graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    float_convs = [node for node in onnx.load(str(calibrated / "net.onnx")).graph.node if node.op_type == "Conv"]
    assert len([node for node in weighted if node.op_type == "Conv"]) == len(float_convs) > 20
    for node in weighted:
        dequantize = producers[node.input[1]]
        assert dequantize.op_type == "DequantizeLinear", node.name
        weight, scale = initializers[dequantize.input[0]], initializers[dequantize.input[1]]
        assert weight.data_type == onnx.TensorProto.INT8, node.name
        assert len(onnx.numpy_helper.to_array(scale).shape) == 1 and scale.dims[0] == weight.dims[0] > 1
    assert (calibrated / "net.int8.onnx").stat().st_size < 0.35 * (calibrated / "net.onnx").stat().st_size


def test_int8_logits_track_the_float_ones(
    calibrated: Path, int8_export: subprocess.CompletedProcess, digits: DataSplits,
) -> None:
    """Thresholds from what this untrained network allows, with margin on any CPU.

    Its largest two logits differ by a median 0.02 while int8 noise moves a logit by about 0.2,
    so many argmaxes flip: measured 0.60-0.65 agreement on the 359 test images and 0.80 correlation
    of the image-dependent parts of the logits (each class's mean over the images removed;
    the float logits vary by 0.3 from image to image) until 2026-12-02; on 2026-12-03's fresh
    install (onnxruntime 1.32.0, numpy 2.4.6; the same with onnxruntime 1.31.1 and onnx 1.22.0,
    and at the code of 2026-12-02) 0.31 agreement and 0.28 correlation. A later session's fresh
    install of the same versions measured 0.65 and 0.80 again, alone and after every test file
    before this one, on an AMD EPYC with AVX512-VNNI: not the packages, nor the order; most
    likely a CPU without VNNI, where U8S8 products can saturate (see
    ``optnas.networks.quantization``), not confirmed.
    Independent predictions with the same class frequencies would agree on ~0.14 of the images
    and correlate 0. The test asks for half the lower measured figures and 1.5 times that chance
    agreement: a file that ignored its input or scrambled classes fails, rounding differences
    between CPUs do not.
    """
    images, _ = digits.test.tensors(28)
    outputs = [onnxruntime.InferenceSession(str(calibrated / name), providers=["CPUExecutionProvider"])
               .run(["logits"], {"image": images.numpy()})[0] for name in ("net.onnx", "net.int8.onnx")]
    assert outputs[0].std(axis=0).mean() > 0.1  # the float logits do depend on the image
    centred = [output - output.mean(axis=0) for output in outputs]
    assert np.corrcoef(centred[0].ravel(), centred[1].ravel())[0, 1] >= 0.14
    predicted = [output.argmax(axis=1) for output in outputs]
    agreement = float((predicted[0] == predicted[1]).mean())
    frequencies = [np.bincount(p, minlength=10) / len(p) for p in predicted]
    chance = float(frequencies[0] @ frequencies[1])
    assert agreement >= max(0.15, 1.5 * chance)
    report = json.loads((calibrated / "export-onnx-int8.json").read_text())
    # The report scored the same files on the same images (in batches of 256, not all at once).
    assert report["argmax_agreement"] == pytest.approx(agreement, abs=0.02)


def test_int8_report_records_every_field_and_warns_on_a_drop(
    calibrated: Path, int8_export: subprocess.CompletedProcess,
) -> None:
    report = json.loads((calibrated / "export-onnx-int8.json").read_text())
    assert FIELDS <= report.keys() and "exit_top1_float" not in report
    assert report["file"] == str(calibrated / "net.int8.onnx") and report["float_file"] == str(calibrated / "net.onnx")
    assert report["calib_images"] == 128 and report["seed"] == 3
    assert report["quant_format"] == "QDQ" and report["per_channel"] is True
    assert report["drop"] == pytest.approx(report["top1_float"] - report["top1_int8"])
    assert 0 <= report["argmax_agreement"] <= 1 and report["n_test_images"] == 359
    assert report["size_bytes_int8"] == (calibrated / "net.int8.onnx").stat().st_size
    assert report["size_ratio"] == pytest.approx(report["size_bytes_int8"] / report["size_bytes_float"])
    assert report["latency_ms_float"] > 0 and report["latency_ms_int8"] > 0
    assert "int8 top1" in int8_export.stdout and " -> " in int8_export.stdout
    assert "warning: int8 loses" in int8_export.stderr  # --max-drop -100: always exceeded


def test_early_exit_network_quantizes_with_every_output(chosen_early_exit: Path) -> None:  # noqa: F811
    report = export_network(chosen_early_exit, "onnx", n_check=8, int8=True, calib_images=32, seed=1)["int8"]
    names = [f"logits_{i}" for i in (1, 2, 3, 4)] + [f"confidence_{i}" for i in (1, 2, 3)]
    session = onnxruntime.InferenceSession(report["file"], providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == names
    got = session.run(names, {"image": np.zeros((5, 3, 28, 28), dtype=np.float32)})
    assert [x.shape for x in got] == [(5, 10)] * 4 + [(5,)] * 3
    assert all(((0 <= x) & (x <= 1)).all() for x in got[4:])
    assert len(report["exit_top1_float"]) == len(report["exit_top1_int8"]) == 4
    assert report["top1_float"] == report["exit_top1_float"][-1] and report["top1_int8"] == report["exit_top1_int8"][-1]
    assert json.loads((chosen_early_exit / "export-onnx-int8.json").read_text()) == report
    _assert_flash_is_the_files_weights(Path(report["file"]), json.loads((chosen_early_exit / "net.subnet").read_text()))


def test_int8_torchscript_is_refused(calibrated: Path, tmp_path: Path) -> None:
    out = tmp_path / "net.pt"
    result = invoke_cli("export", str(calibrated), "--format", "torchscript", "--int8", "--out", str(out))
    assert result.returncode == 2 and "--int8 quantizes ONNX files only" in result.stderr
    assert not out.exists()


def test_flash_kb_is_the_int8_files_weights(calibrated: Path, int8_export: subprocess.CompletedProcess) -> None:
    assert int8_export.returncode == 0, int8_export.stderr
    subnet = json.loads((calibrated / "net.subnet").read_text())
    _assert_flash_is_the_files_weights(calibrated / "net.int8.onnx", subnet)


def _assert_flash_is_the_files_weights(int8_file: Path, subnet: dict) -> None:
    from optnas.networks.memory import memory

    model = onnx.load(str(int8_file))
    stored = sum(onnx.numpy_helper.to_array(tensor).nbytes for tensor in model.graph.initializer)
    flash = memory(subnet, 10)["flash_kb"] * 1024
    # The model leaves out only the per-tensor activation scales and zero points: 0.1 % allowed.
    assert flash <= stored <= 1.001 * flash
