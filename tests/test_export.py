"""`optnas export`: ONNX and TorchScript files that compute what PyTorch computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from optnas.data.datasets import DataSplits
from optnas.export import export_network, load_chosen_network
from optnas.networks.early_exits import EarlyExitNetwork, exit_decisions
from optnas.networks.supernet import extract_subnet
from optnas.spaces import EEMobileNetV3Space, MobileNetV3Space
from tests.conftest import invoke_cli

SUBNET = {"ks": [3, 5, 7, 3] * 5, "e": [3, 4, 6, 3] * 5, "d": [2, 3, 2, 2, 3], "r": 28, "w": 1.0}


def _save_chosen(folder: Path, subnet: dict, network: torch.nn.Module) -> Path:
    """Write a chosen architecture with the weights the search keeps (ckpt.pth), BN statistics not trivial."""
    generator = torch.Generator().manual_seed(0)
    for norm in (m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.normal_(0, 0.1, generator=generator)
        norm.running_var.uniform_(0.5, 1.5, generator=generator)
    (folder / "net.subnet").write_text(json.dumps(subnet))
    torch.save({"state_dict": network.state_dict(), "subnet": dict(subnet)}, folder / "ckpt.pth")
    return folder


@pytest.fixture(scope="module")
def chosen(tmp_path_factory: pytest.TempPathFactory, supernet: torch.nn.Module) -> Path:
    subnet = MobileNetV3Space(resolutions=(28,)).canonical(SUBNET)
    return _save_chosen(tmp_path_factory.mktemp("chosen"), subnet, extract_subnet(supernet, subnet))


@pytest.fixture(scope="module")
def chosen_early_exit(tmp_path_factory: pytest.TempPathFactory, supernet: torch.nn.Module) -> Path:
    subnet = EEMobileNetV3Space(resolutions=(28,)).canonical(
        {**SUBNET, "exits": [1, 0, 1, 1], "epsilon": [0.5, 0.1, 0.4, 0.6]})
    network = EarlyExitNetwork(extract_subnet(supernet, SUBNET), subnet, 10, seed=4)
    return _save_chosen(tmp_path_factory.mktemp("chosen-ee"), subnet, network)


def test_onnx_export_matches_pytorch_on_digits(chosen: Path, digits: DataSplits) -> None:
    report = export_network(chosen, "onnx", opset=17, n_check=32)
    assert report["max_abs_diff"] <= 1e-4 and report["n_images"] == 32
    # Checked again here, independently, on test images the export did not see, at another batch size.
    images, _ = digits.test.subset(range(100, 150)).tensors(28)
    network, _, weights = load_chosen_network(chosen)
    assert weights.name == "ckpt.pth"
    with torch.inference_mode():
        expected = network(images).numpy()
    session = onnxruntime.InferenceSession(report["file"], providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": images.numpy()})[0]
    assert got.shape == (50, 10) and np.abs(got - expected).max() <= 1e-4
    assert np.abs(expected).max() > 1e-2  # the logits are not trivially zero
    assert json.loads((chosen / "export-onnx.json").read_text())["opset"] == 17


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_through_the_cli(chosen: Path, digits: DataSplits, tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    result = invoke_cli("export", str(chosen), "--format", "torchscript", "--out", str(out), "--n-check", "16")
    assert result.returncode == 0, result.output
    assert "max |difference| from PyTorch" in result.stdout
    images, _ = digits.test.subset(range(8)).tensors(28)
    network, _, _ = load_chosen_network(chosen)
    extra = {"classes.json": ""}
    with torch.inference_mode():
        assert torch.allclose(torch.jit.load(str(out), _extra_files=extra)(images), network(images), atol=1e-5)
    # The file names its classes and the normalisation of its input.
    labels = json.loads(extra["classes.json"])
    assert labels == {"classes": [str(digit) for digit in range(10)], "mean": list(digits.test.mean),
                      "std": list(digits.test.std)}


def test_export_errors_are_one_line(chosen: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "net.subnet").write_text((chosen / "net.subnet").read_text())
    result = invoke_cli("export", str(empty))
    assert result.returncode == 2 and "holds no weights" in result.stderr
    result = invoke_cli("export", str(chosen), "--format", "tflite")
    assert result.returncode == 2
    with pytest.raises(ValueError, match="differ from PyTorch"):
        export_network(chosen, "onnx", n_check=8, atol=-1.0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_early_exit_export_has_every_exits_logits_and_confidence(chosen_early_exit: Path, digits: DataSplits) -> None:
    names = [f"logits_{i}" for i in (1, 2, 3, 4)] + [f"confidence_{i}" for i in (1, 2, 3)]
    images, _ = digits.test.subset(range(100, 150)).tensors(28)
    network, _, _ = load_chosen_network(chosen_early_exit)
    assert isinstance(network, EarlyExitNetwork)
    with torch.inference_mode():
        logits, confidences = network(images)
    expected = [x.numpy() for x in logits] + [torch.sigmoid(c).numpy() for c in confidences]
    onnx_report = export_network(chosen_early_exit, "onnx", n_check=32)
    script_report = export_network(chosen_early_exit, "torchscript", n_check=32)
    for report in (onnx_report, script_report):
        assert report["outputs"] == names and report["epsilon"] == [0.5, 0.4, 0.6]
        assert report["max_abs_diff"] <= 1e-4
    # Checked again independently on images the export did not see, at another batch size.
    session = onnxruntime.InferenceSession(onnx_report["file"], providers=["CPUExecutionProvider"])
    from_onnx = session.run(names, {"image": images.numpy()})
    with torch.inference_mode():
        from_script = [x.numpy() for x in torch.jit.load(script_report["file"])(images)]
    for got in (from_onnx, from_script):
        assert [x.shape for x in got] == [(50, 10)] * 4 + [(50,)] * 3
        assert max(np.abs(a - b).max() for a, b in zip(got, expected)) <= 1e-4
    # The documented deployment rule on the file's confidences is the library's exit rule, with
    # the subnet's thresholds and with each exit's middle confidence, which sends about half of
    # the images still there onwards. The middle value itself, not a mean of two float32 values
    # that float32 and float64 comparisons could round to different sides.
    confidence = np.stack(from_onnx[4:])
    for epsilon in (report["epsilon"], np.sort(confidence, axis=1)[:, 25].tolist()):
        fired = np.vstack([confidence >= np.array(epsilon)[:, None], np.ones((1, 50), dtype=bool)])
        reference = exit_decisions(torch.from_numpy(confidence), epsilon).numpy()
        assert (fired.argmax(axis=0) == reference).all()
    assert len(set(reference.tolist())) > 1


def test_onnx_export_records_measured_and_predicted_latency(chosen: Path, tmp_path: Path) -> None:
    from optnas.latency.table import TABLE_FORMAT, LatencyTable, space_layers

    keys = space_layers([1.0], [28], 10)
    lut = tmp_path / "lut.json"
    lut.write_text(json.dumps({"format": TABLE_FORMAT, "n_classes": 10, "overhead_ms": 0.1,
                               "layers": {key: {"ms": 0.05} for key in keys}}))
    result = invoke_cli("export", str(chosen), "--format", "onnx", "--n-check", "8", "--latency-table", str(lut))
    assert result.returncode == 0, result.stderr
    report = json.loads((chosen / "export-onnx.json").read_text())
    subnet = json.loads((chosen / "net.subnet").read_text())
    assert report["predicted_latency_ms"] == pytest.approx(LatencyTable.load(lut).predict(subnet))
    assert 0 < report["latency_ms"] <= report["latency_p90_ms"] and report["latency_threads"] == 1
    assert "latency in onnxruntime" in result.stdout
