"""Latency timing: the interleaved timing protocol, the layer folder, the device script, whole networks.

Timings are machine-dependent: the tests check what the protocol guarantees (fields, order of
calls, stop rules) with a fake clock, and only positivity and ordering of real timings.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from optnas.latency import RUNTIMES
from optnas.latency import layers as layers_module
from optnas.latency.build import build_table
from optnas.latency.device import (
    MANIFEST_FORMAT,
    TABLE_FORMAT,
    Call,
    TimingProtocol,
    fit_overhead,
    time_calls,
    time_layer_folder,
    time_table,
)
from optnas.latency.layers import LayerSpace, calibration_networks, layer_modules, write_folder
from optnas.latency.measure import Measurer, measure_onnx_file
from optnas.latency.table import LatencyTable, backbone_layers, layer_key, space_layers
from optnas.spaces.eemobilenetv3 import EEMobileNetV3Space


class FakeClock:
    """A clock that advances only when a fake item runs, by the durations the test gives it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.log: list[str] = []

    def __call__(self) -> float:
        return self.now

    def item(self, name: str, durations: Iterator[float]) -> Call:
        def call() -> None:
            self.log.append(name)
            self.now += next(durations)
        return call


def _constant(seconds: float) -> Iterator[float]:
    while True:
        yield seconds


def _rising(start: float) -> Iterator[float]:
    seconds = start
    while True:
        yield seconds
        seconds += start


def test_stable_items_are_interleaved_and_stop_at_min_repeats() -> None:
    clock = FakeClock()
    protocol = TimingProtocol(warmup=2, min_repeats=10, max_repeats=100, round_size=5)
    result = time_calls({"a": clock.item("a", _constant(0.001)), "b": clock.item("b", _constant(0.002))},
                        protocol, clock=clock)
    assert result == {"a": {"ms": pytest.approx(1.0), "p90_ms": pytest.approx(1.0), "repeats": 10},
                      "b": {"ms": pytest.approx(2.0), "p90_ms": pytest.approx(2.0), "repeats": 10}}
    # Round-robin from the first warm-up call to the last timed one.
    assert clock.log == ["a", "b"] * (2 + 10)


def test_an_unstable_item_runs_on_alone_until_max_repeats() -> None:
    clock = FakeClock()
    protocol = TimingProtocol(warmup=1, min_repeats=10, max_repeats=40, round_size=5, tolerance=0.02)
    # Each call of "drift" is slower than the last: its median never settles.
    calls = {"steady": clock.item("steady", _constant(0.001)), "drift": clock.item("drift", _rising(0.001))}
    result = time_calls(calls, protocol, clock=clock)
    assert result["steady"]["repeats"] == 10
    assert result["drift"]["repeats"] == 40
    assert result["drift"]["p90_ms"] > result["drift"]["ms"]
    assert clock.log == ["steady", "drift"] * 11 + ["drift"] * 30


def test_the_time_cap_stops_a_slow_item_after_its_first_round() -> None:
    clock = FakeClock()
    protocol = TimingProtocol(warmup=0, min_repeats=10, max_repeats=100, round_size=4, max_seconds=3.0)
    result = time_calls({"slow": clock.item("slow", _constant(1.0))}, protocol, clock=clock)
    assert result["slow"] == {"ms": pytest.approx(1000.0), "p90_ms": pytest.approx(1000.0), "repeats": 4}


def test_real_calls_give_ordered_positive_figures() -> None:
    result = time_calls({"sleep": lambda: time.sleep(0.001), "noop": lambda: None},
                        TimingProtocol(warmup=1, min_repeats=5, max_repeats=50))
    assert result["sleep"]["ms"] >= 1.0
    for timing in result.values():
        assert 0 <= timing["ms"] <= timing["p90_ms"]
        assert 5 <= timing["repeats"] <= 50


@pytest.mark.parametrize("fields", [{"min_repeats": 20, "max_repeats": 10}, {"round_size": 0},
                                    {"max_seconds": 0.0}, {"tolerance": -0.1}])
def test_an_impossible_protocol_is_refused(fields: dict) -> None:
    with pytest.raises(ValueError, match="invalid timing protocol"):
        TimingProtocol(**fields)


def test_the_overhead_is_the_median_gap() -> None:
    assert fit_overhead([1.0, 2.0, 3.0], [1.5, 2.5, 13.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        fit_overhead([], [])


# ---- the layer folder -------------------------------------------------------------------------

N_CLASSES = 10
# Enough repeats to exercise the protocol, few enough for a quick test.
FAST = TimingProtocol(warmup=1, min_repeats=5, max_repeats=20, round_size=5)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A layer folder of one calibration network's layers and two exit heads (a whole space takes 25 s)."""
    networks = calibration_networks((1.0,), (32,), N_CLASSES, n=1, seed=0)
    every = space_layers((1.0,), (32,), N_CLASSES, exits=True)
    keys = [*dict.fromkeys(networks[0]["keys"]), "exit-w1.0-s0-i8-c10", "exit-w1.0-s2-i2-c10"]
    specs = {key: every[key] for key in keys}
    folder = tmp_path_factory.mktemp("layers")
    return folder, write_folder(folder, specs, networks, N_CLASSES), specs


def _session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_the_manifest_lists_every_layer_with_a_runnable_file_of_its_input_shape(tiny_folder) -> None:
    folder, manifest, specs = tiny_folder
    assert manifest["format"] == MANIFEST_FORMAT and (folder / "device.py").is_file()
    assert (manifest["widths"], manifest["resolutions"], manifest["exits"]) == ([1.0], [32], True)
    assert set(manifest["layers"]) == set(specs)
    for key, entry in manifest["layers"].items():
        spec = entry["spec"]
        assert layer_key(spec) == key
        side = spec["r"] if spec["kind"] == "stem" else spec["size"]
        assert entry["input_shape"][0] == 1 and entry["input_shape"][2:] == [side, side]
        if spec["kind"] == "stem":
            assert entry["input_shape"][1] == 3
        session = _session(folder / entry["file"])
        assert session.get_inputs()[0].shape == entry["input_shape"]
        outputs = session.run(None, {"input": np.ones(entry["input_shape"], np.float32)})
        assert len(outputs) == (2 if spec["kind"] == "exit" else 1)
        assert all(np.isfinite(output).all() for output in outputs)
    network = manifest["calibration"][0]
    assert network["keys"] == [layer_key(spec) for spec in backbone_layers(network["subnet"], N_CLASSES)]
    assert _session(folder / network["file"]).get_inputs()[0].shape == network["input_shape"] == [1, 3, 32, 32]


def test_the_layers_chain_like_the_network_they_come_from(tiny_folder) -> None:
    _, manifest, _ = tiny_folder
    network = manifest["calibration"][0]
    modules = layer_modules({key: manifest["layers"][key]["spec"] for key in network["keys"]})
    x = torch.randn(network["input_shape"])
    with torch.inference_mode():
        for key in network["keys"]:
            module, shape = modules[key]
            assert tuple(x.shape) == shape, key
            x = module(x)
    assert tuple(x.shape) == (1, N_CLASSES)


def test_each_layer_file_computes_what_its_module_computes(tiny_folder) -> None:
    folder, manifest, specs = tiny_folder
    rng = np.random.default_rng(0)
    for key, (module, shape) in layer_modules(specs).items():
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.inference_mode():
            expected = module(torch.from_numpy(x))
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = _session(folder / manifest["layers"][key]["file"]).run(None, {"input": x})
        for file_output, reference in zip(got, expected, strict=True):
            np.testing.assert_allclose(file_output, reference.numpy(), rtol=1e-4, atol=1e-4, err_msg=key)


# ---- the device script ------------------------------------------------------------------------

# Runs a script with optnas and torch impossible to import: proof that it stands alone.
_WITHOUT_OPTNAS = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("optnas", "torch"):
            raise ImportError(f"{name} is not on the device")
sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _device(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-c", _WITHOUT_OPTNAS, *map(str, args)], check=False,
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_device_script_writes_a_table_standalone_and_resumes(tiny_folder, tmp_path: Path) -> None:
    folder, manifest, specs = tiny_folder
    result = _device(folder / "device.py", folder, "--out", "lut.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{len(specs)}/{len(specs)} layers" in result.stderr
    table = LatencyTable.load(tmp_path / "lut.json")
    data = table.data
    assert set(table.layers) == set(specs)
    assert (data["runtime"], data["threads"], data["n_classes"]) == ("onnxruntime", 1, N_CLASSES)
    assert data["runtime_version"] == onnxruntime.__version__ and data["device"] and data["date"].endswith("Z")
    assert data["call_overhead_ms"] >= 0
    assert all(entry["ms"] <= entry["p90_ms"] and entry["repeats"] >= 1 for entry in data["layers"].values())
    [record] = data["calibration"]
    assert record["keys"] == manifest["calibration"][0]["keys"]
    # Timed again beside the network, in the same window, so not the entries' sum.
    assert record["layers_ms"] > 0
    assert table.overhead_ms == pytest.approx(fit_overhead([record["layers_ms"]], [record["measured_ms"]]))
    assert table.predict(manifest["calibration"][0]["subnet"]) == pytest.approx(
        sum(table.layers[key] for key in record["keys"]) + record["measured_ms"] - record["layers_ms"])

    # An interrupted run: one entry lost, the others (one marked) must be kept, not timed again.
    kept, lost = record["keys"][:2]
    data["layers"][kept]["ms"] = 123.0
    del data["layers"][lost]
    (tmp_path / "lut.json").write_text(json.dumps(data))
    result = _device(folder / "device.py", folder, "--out", "lut.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((tmp_path / "lut.json").read_text())
    assert resumed["layers"][kept]["ms"] == 123.0 and lost in resumed["layers"]
    assert resumed["calibration"][0] == record


def test_the_device_script_refuses_to_mix_conditions(tiny_folder, tmp_path: Path) -> None:
    folder, _, _ = tiny_folder
    time_layer_folder(folder, tmp_path / "lut.json", threads=1, protocol=FAST)
    before = (tmp_path / "lut.json").read_text()
    result = _device(folder / "device.py", folder, "--out", "lut.json", "--threads", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "threads 1" in result.stderr and "choose another --out" in result.stderr
    assert (tmp_path / "lut.json").read_text() == before


@pytest.mark.parametrize("problem", ["missing", "no manifest", "bad manifest", "missing file"])
def test_an_unusable_folder_is_one_line_and_exit_code_2(problem: str, tiny_folder, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    if problem != "missing":
        folder.mkdir()
    if problem == "bad manifest":
        (folder / "manifest.json").write_text("{not json")
    if problem == "missing file":
        (folder / "manifest.json").write_text((tiny_folder[0] / "manifest.json").read_text())
    result = _device(tiny_folder[0] / "device.py", folder, "--out", "lut.json", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and str(folder) in result.stderr
    assert not (tmp_path / "lut.json").exists()


def test_the_device_script_has_help_and_imports_neither_torch_nor_optnas_beyond_itself() -> None:
    result = subprocess.run([sys.executable, "-m", "optnas.latency.device", "--help"], check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "--threads" in result.stdout
    probe = ("import sys, optnas.latency.device\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optnas', 'torch', 'onnxruntime')))")
    result = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(["optnas", "optnas.latency", "optnas.latency.device"])


# ---- whole networks and the torch table -------------------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_whole_networks_are_timed_end_to_end(runtime: str) -> None:
    space = EEMobileNetV3Space(resolutions=[32])
    measurer = Measurer(N_CLASSES, runtime, protocol=FAST)
    for subnet in (space.smallest(), space.smallest().backbone()):
        result = measurer.measure(subnet)
        assert 0 < result["latency_ms"] <= result["p90_ms"] < math.inf
        assert 5 <= result["repeats"] <= 20
    assert len(measurer.builder._supernets) == 1


def test_an_onnx_file_is_timed_with_every_output(tiny_folder, tmp_path: Path) -> None:
    folder, manifest, _ = tiny_folder
    exit_file = folder / manifest["layers"]["exit-w1.0-s0-i8-c10"]["file"]
    assert measure_onnx_file(exit_file, protocol=FAST)["latency_ms"] > 0
    # A file with a batch axis, as optnas export writes them.
    path = tmp_path / "batch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(2, 4),), str(path), input_names=["image"],
                          dynamic_axes={"image": {0: "batch"}}, dynamo=False)
    result = measure_onnx_file(path, protocol=FAST)
    assert 0 < result["latency_ms"] <= result["p90_ms"]
    with pytest.raises(ValueError, match="no such ONNX file"):
        measure_onnx_file(tmp_path / "absent.onnx")


def test_a_torch_table_has_the_format_and_covers_its_space(tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    table = build_table(out, LayerSpace(n_calibration=2, exits=True), runtime="torch", progress=False, protocol=FAST)
    loaded = LatencyTable.load(out)
    loaded.check_covers([1.0], [32], N_CLASSES, exits=True)
    assert (table["runtime"], table["runtime_version"], table["format"]) == ("torch", torch.__version__, TABLE_FORMAT)
    assert {"device", "machine", "python", "numpy", "date", "call_overhead_ms", "protocol"} <= set(table)
    assert len(table["calibration"]) == 2
    assert table["overhead_ms"] == pytest.approx(
        fit_overhead([r["layers_ms"] for r in table["calibration"]], [r["measured_ms"] for r in table["calibration"]]))
    with pytest.raises(ValueError, match="runtime"):
        build_table(out, runtime="tflite")


def test_an_onnxruntime_table_is_the_device_scripts(tiny_folder, tmp_path: Path, monkeypatch) -> None:
    # The whole space takes 25 s to export: the build runs on the tiny folder's layers.
    _, manifest, specs = tiny_folder
    monkeypatch.setattr(layers_module, "space_layers", lambda *args: specs)
    table = build_table(tmp_path / "lut.json", LayerSpace(n_calibration=1), progress=False, work_dir=tmp_path / "work",
                        protocol=FAST)
    assert table["runtime"] == "onnxruntime" and set(table["layers"]) == set(specs)
    assert [record["keys"] for record in table["calibration"]] == [manifest["calibration"][0]["keys"]]
    assert (tmp_path / "work" / "device.py").is_file()


def test_the_overhead_is_fitted_on_a_network_and_its_layers_timed_together(tmp_path: Path) -> None:
    # The machine is twice as slow while the layers are timed as during calibration; the
    # overhead (what the network costs beyond its layers) must not absorb that difference.
    load = {"factor": 2.0}

    def sleeper(ms: float) -> Call:
        return lambda: time.sleep(load["factor"] * ms / 1000)

    def quieter(stage: str, done: int, total: int) -> None:
        if stage == "layers" and done == total:
            load["factor"] = 1.0

    header = {"runtime": "fake", "runtime_version": "0", "threads": 1, "n_classes": 10, "widths": [1.0],
              "resolutions": [32], "exits": False}
    network = {"name": "net", "keys": ["a", "b", "a"], "make": lambda: sleeper(4.0 + 2.0 + 4.0 + 1.5)}
    protocol = TimingProtocol(warmup=1, min_repeats=10, max_repeats=40, tolerance=0.01)
    table = time_table(tmp_path / "lut.json", header, {"a": lambda: sleeper(4.0), "b": lambda: sleeper(2.0)},
                       [network], lambda: sleeper(0.0), protocol=protocol, progress=quieter)
    # Sleeps overshoot by tens of microseconds per call; the layers were timed at twice their cost.
    assert table["layers"]["a"]["ms"] == pytest.approx(8.0, abs=0.5)
    assert table["overhead_ms"] == pytest.approx(1.5, abs=0.5)
