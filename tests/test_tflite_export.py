"""`optnas export --format tflite --int8`: optnas's own int8 flatbuffer, run in TFLite Micro's interpreter.

The file is checked in two independent halves. (1) Its meaning, read back from the flatbuffer
by this test's own float interpreter of the TFLite operators (weights dequantized, every output
clamped to its int8 range, activations not rounded), is the PyTorch network's function. (2)
TFLM computes every operator of the file as that meaning says, within about one int8 step,
from its own int8 inputs. End to end, TFLM's logits then track PyTorch's as far as int8 noise
lets an untrained network's (see the thresholds).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ofa.utils.pytorch_modules import Hswish

from optnas.boards import BOARDS
from optnas.data.datasets import DataSplits
from optnas.networks.inference import recalibrate_bn
from optnas.networks.supernet import extract_subnet
from optnas.spaces import MobileNetV3Space
from tests.conftest import invoke_cli
from tests.test_export import chosen_early_exit  # noqa: F401  (a fixture)
from tests.test_int8_export import calibrated  # noqa: F401  (a fixture)

runtime = pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install "
                              "'optnas[tflite]')").runtime

from optnas.networks.tflite import ALLOWED_OPS, UnsupportedModuleError, convert_int8  # noqa: E402
from optnas.networks.tflm import TFLMRunner, arena_use  # noqa: E402

# r=24: the stem and stages 1, 2 and 5 stride 2 on even sizes (24, 12, 6, 2: PAD then VALID),
# stage 3 on an odd one (3: SAME); kernels 3, 5 and 7 pad by 1, 2 and 3.
SUBNET = {"ks": [3, 5, 7, 3] * 5, "e": [3, 4, 6, 3] * 5, "d": [2, 2, 2, 2, 2], "r": 24, "w": 1.0}
RESOLUTION = 24
ACTIVATIONS = {0: None, 1: F.relu, 3: F.relu6}  # ActivationFunctionType NONE, RELU, RELU6


@pytest.fixture(scope="module")
def network(supernet: torch.nn.Module, digits: DataSplits) -> torch.nn.Module:
    """An untrained network whose BN statistics are re-estimated on digits, so its logits depend on the image."""
    network = extract_subnet(supernet, MobileNetV3Space(resolutions=(RESOLUTION,)).canonical(SUBNET))
    recalibrate_bn(network, digits.train, resolution=RESOLUTION, n_images=200)
    return network.eval()


@pytest.fixture(scope="module")
def calibration(digits: DataSplits) -> torch.Tensor:
    return digits.train.subset(range(200, 264)).tensors(RESOLUTION)[0]


@pytest.fixture(scope="module")
def converted(network: torch.nn.Module, calibration: torch.Tensor):
    return convert_int8(network, calibration)


@pytest.fixture(scope="module")
def test_images(digits: DataSplits) -> torch.Tensor:
    return digits.test.subset(range(60)).tensors(RESOLUTION)[0]


def _model(flatbuffer: bytes):
    return runtime.convert_bytearray_to_object(bytearray(flatbuffer))


def _op_name(model, operator) -> str:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    code = runtime.get_builtin_code_from_operator_code(model.operatorCodes[operator.opcodeIndex])
    return next(name for name, value in vars(schema.BuiltinOperator).items() if value == code)


def _constant(model, index: int) -> np.ndarray:
    """A constant tensor, dequantized (per channel along its quantized dimension) unless int32 without scale."""
    tensor = model.subgraphs[0].tensors[index]
    dtype = np.int8 if tensor.type == 9 else np.int32
    values = np.frombuffer(bytes(model.buffers[tensor.buffer].data), dtype).reshape(tensor.shape)
    if tensor.quantization is None or tensor.quantization.scale is None:
        return values
    shape = [1] * values.ndim
    shape[tensor.quantization.quantizedDimension] = -1
    return values.astype(np.float64) * np.asarray(tensor.quantization.scale).reshape(shape)


def _int8_range(model, index: int) -> tuple[float, float]:
    quantization = model.subgraphs[0].tensors[index].quantization
    scale, zero_point = quantization.scale[0], quantization.zeroPoint[0]
    return (-128 - zero_point) * scale, (127 - zero_point) * scale


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TFLite's SAME: the output is ceil(size / stride); the odd pixel of padding goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _run_op(model, operator, inputs: list[torch.Tensor]) -> torch.Tensor:
    """One operator of the file in float64 on NHWC tensors, its output clamped to its int8 range."""
    name, options = _op_name(model, operator), operator.builtinOptions
    x = inputs[0]
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        weight = torch.from_numpy(_constant(model, operator.inputs[1]))
        bias = torch.from_numpy(_constant(model, operator.inputs[2]))
        # NHWC filters to PyTorch's: [O, k, k, I] -> [O, I, k, k]; depthwise [1, k, k, C] -> [C, 1, k, k].
        weight = weight.permute(3, 0, 1, 2) if name == "DEPTHWISE_CONV_2D" else weight.permute(0, 3, 1, 2)
        stride, kernel = options.strideH, weight.shape[-1]
        x = x.permute(0, 3, 1, 2)
        if options.padding == 0:  # SAME
            top, bottom = _same_padding(x.shape[2], kernel, stride)
            left, right = _same_padding(x.shape[3], kernel, stride)
            x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, weight, bias, stride, groups=x.shape[1] if name == "DEPTHWISE_CONV_2D" else 1)
        activation = ACTIVATIONS[options.fusedActivationFunction]
        y = (activation(y) if activation else y).permute(0, 2, 3, 1)
    elif name == "PAD":
        pads = _constant(model, operator.inputs[1])
        y = F.pad(x, tuple(int(v) for v in pads[::-1].ravel()))  # last dimension first
    elif name == "HARD_SWISH":
        y = F.hardswish(x)
    elif name == "MEAN":
        y = x.mean(dim=tuple(int(a) for a in _constant(model, operator.inputs[1])), keepdim=options.keepDims)
    elif name in ("MUL", "ADD"):
        y = x * inputs[1] if name == "MUL" else x + inputs[1]
    else:
        assert name == "FULLY_CONNECTED"
        weight = torch.from_numpy(_constant(model, operator.inputs[1]))
        y = F.linear(x.reshape(len(x), -1), weight, torch.from_numpy(_constant(model, operator.inputs[2])))
    return y.clamp(*_int8_range(model, operator.outputs[0]))


def _file_meaning(flatbuffer: bytes, images: torch.Tensor) -> np.ndarray:
    """The file's logits in float, computed from the flatbuffer alone (see the module's doc)."""
    model = _model(flatbuffer)
    subgraph = model.subgraphs[0]
    values = {subgraph.inputs[0]: images.double().permute(0, 2, 3, 1)}
    for operator in subgraph.operators:
        values[operator.outputs[0]] = _run_op(model, operator, [values[i] for i in operator.inputs if i in values])
    return values[subgraph.outputs[0]].numpy()


def _centred_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of the image-dependent parts of two logit arrays (each class's mean removed)."""
    return float(np.corrcoef((a - a.mean(axis=0)).ravel(), (b - b.mean(axis=0)).ravel())[0, 1])


def test_the_file_means_the_network(network: torch.nn.Module, converted, calibration: torch.Tensor) -> None:
    """On its calibration images (no activation leaves its int8 range, except where that is meant:
    the SE gate's clamp, h-swish inputs below -3, which h-swish maps to 0 either way) the file
    differs from the network by its int8 weights only: measured 0.97 correlation of the
    image-dependent logits and a largest difference of 0.26 of the largest logit (10-bit
    weights would give 0.999). The converter with a pad on the wrong side, transposed 3x3
    filters, no bias, the SE gate's zero point at 0 or activation ranges cut to 0.7 gave
    correlations of -0.02 to 0.74."""
    with torch.no_grad():
        expected = network(calibration).numpy()
    meaning = _file_meaning(converted.flatbuffer, calibration)
    assert expected.std(axis=0).mean() > 0.05  # the logits do depend on the image
    assert _centred_correlation(meaning, expected) >= 0.9
    assert np.abs(meaning - expected).max() <= 0.5 * np.abs(expected).max()


def test_hswish_inputs_start_at_minus_3(network: torch.nn.Module, converted, calibration: torch.Tensor) -> None:
    """h-swish is 0 below -3, so a HARD_SWISH input's int8 range starts at -3 at the lowest (a lower
    start only coarsens its step), and at its calibration min otherwise, within the zero point's
    rounding (one step). The calibration images do take some inputs below -3."""
    lows: list[float] = []
    hooks = [module.register_forward_hook(lambda _, inputs, __: lows.append(float(inputs[0].min())))
             for module in network.modules() if isinstance(module, Hswish)]
    try:
        with torch.no_grad():
            network(calibration)
    finally:
        for hook in hooks:
            hook.remove()
    model = _model(converted.flatbuffer)
    tensors = [operator.inputs[0] for operator in model.subgraphs[0].operators
               if _op_name(model, operator) == "HARD_SWISH"]
    assert len(tensors) == len(lows) and min(lows) < -3.5
    for tensor, low in zip(tensors, lows, strict=True):
        step = float(model.subgraphs[0].tensors[tensor].quantization.scale[0])
        assert _int8_range(model, tensor)[0] == pytest.approx(max(low, -3.0), abs=step)


def test_tflm_computes_every_operator_of_the_file(converted, test_images: torch.Tensor) -> None:
    """Each operator's int8 output in TFLM is within 1.5 steps of the file's meaning on TFLM's own inputs."""
    model = _model(converted.flatbuffer)
    subgraph = model.subgraphs[0]
    interpreter = runtime.Interpreter.from_bytes(
        converted.flatbuffer, arena_size=4 << 20, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    image = test_images[:1].permute(0, 2, 3, 1).numpy()
    interpreter.set_input(np.clip(np.round(image / converted.input_scale) + converted.input_zero_point, -128, 127)
                          .astype(np.int8), 0)
    interpreter.invoke()

    def dequantized(index: int) -> tuple[torch.Tensor, float]:
        tensor = subgraph.tensors[index]
        scale, zero_point = tensor.quantization.scale[0], tensor.quantization.zeroPoint[0]
        data = interpreter.GetTensor(index, 0)["tensor_data"].reshape(tensor.shape)
        return torch.from_numpy((data.astype(np.float64) - zero_point) * scale), scale

    steps = []
    for operator in subgraph.operators:
        activations = [i for i in operator.inputs if subgraph.tensors[i].buffer == 0]
        expected = _run_op(model, operator, [dequantized(i)[0] for i in activations])
        got, scale = dequantized(operator.outputs[0])
        steps.append(float((got - expected).abs().max()) / scale)
    assert len(steps) == len(converted.ops) and max(steps) <= 1.5, steps


def test_tflm_logits_track_pytorch(network: torch.nn.Module, converted, test_images: torch.Tensor) -> None:
    """End to end, int8 noise accumulates over 10 blocks of an untrained network whose largest two
    logits are close: measured 0.65-0.75 argmax agreement and 0.80-0.85 correlation of the
    image-dependent logits on digits (a trained network: 0.994, see the README). The test asks
    for well above chance and half that correlation: a file that ignored its input fails."""
    got = TFLMRunner(converted.flatbuffer)(test_images.numpy())
    with TFLMRunner(converted.flatbuffer, processes=2) as runner:  # shares of the images, in order
        assert np.array_equal(runner(test_images.numpy()), got)
    with torch.no_grad():
        expected = network(test_images).numpy()
    assert got.shape == expected.shape
    assert _centred_correlation(got, expected) >= 0.5
    predicted = [got.argmax(axis=1), expected.argmax(axis=1)]
    frequencies = [np.bincount(p, minlength=10) / len(p) for p in predicted]
    assert float((predicted[0] == predicted[1]).mean()) >= max(0.4, 2 * float(frequencies[0] @ frequencies[1]))


def test_the_graph_is_int8_with_the_allowed_ops_and_padded_copies_in_the_arena(converted) -> None:
    model = _model(converted.flatbuffer)
    subgraph = model.subgraphs[0]
    names = [_op_name(model, operator) for operator in subgraph.operators]
    assert names == converted.ops and set(names) == set(ALLOWED_OPS)
    assert Counter(names)["PAD"] == 4 and Counter(names)["FULLY_CONNECTED"] == 1
    activations = {i for operator in subgraph.operators for i in (*operator.inputs, *operator.outputs)
                   if subgraph.tensors[i].buffer == 0}
    assert {subgraph.tensors[i].type for i in activations} == {9}  # every activation int8, input and logits too
    assert converted.input_shape == (1, RESOLUTION, RESOLUTION, 3) and converted.output_shape == (1, 10)
    total, head, tail = arena_use(converted.flatbuffer)
    assert total == head + tail and tail > 0
    # TFLM's planner keeps a PAD's input and its padded copy alive together.
    pads = [operator for operator in subgraph.operators if _op_name(model, operator) == "PAD"]
    assert head >= max(sum(np.prod(subgraph.tensors[i].shape) for i in (op.inputs[0], op.outputs[0])) for op in pads)


def test_a_narrow_network_without_feature_mix_converts(network: torch.nn.Module, digits: DataSplits) -> None:
    """Widths below 1.0 drop the feature mix: the classifier takes the pooled final expand."""
    import copy

    from ofa.utils.layers import LinearLayer

    narrow = copy.deepcopy(network)
    narrow.feature_mix_layer = torch.nn.Identity()
    narrow.classifier = LinearLayer(narrow.final_expand_layer.conv.out_channels, 10)
    images, _ = digits.train.subset(range(32)).tensors(RESOLUTION)
    model = convert_int8(narrow.eval(), images)
    full = convert_int8(network, images)
    assert Counter(full.ops) - Counter(model.ops) == Counter({"CONV_2D": 1, "HARD_SWISH": 1})
    with torch.no_grad():
        expected = narrow(images).numpy()
    assert _centred_correlation(_file_meaning(model.flatbuffer, images), expected) >= 0.9


def test_unknown_modules_are_refused_by_name(network: torch.nn.Module, digits: DataSplits) -> None:
    import copy

    calibration, _ = digits.train.subset(range(4)).tensors(RESOLUTION)
    changed = copy.deepcopy(network)
    changed.blocks[2].conv.depth_conv.act = torch.nn.SiLU()
    with pytest.raises(UnsupportedModuleError, match=r"^cannot convert blocks\.2\.conv\.depth_conv\.act \(SiLU\)"):
        convert_int8(changed, calibration)

    class Doubled(type(network)):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    changed = copy.deepcopy(network)
    changed.__class__ = Doubled
    with pytest.raises(UnsupportedModuleError, match="computes other logits"):
        convert_int8(changed, calibration)


def test_cli_export_scores_the_file_in_tflm(calibrated: Path, digits: DataSplits) -> None:  # noqa: F811
    result = invoke_cli("export", str(calibrated), "--format", "tflite", "--int8", "--calib-images", "64",
                        "--seed", "3", "--max-drop", "-100", "--board", "esp32s3")
    assert result.returncode == 0, result.stderr
    report = json.loads((calibrated / "export-tflite-int8.json").read_text())
    flatbuffer = (calibrated / "net.int8.tflite").read_bytes()
    assert report["file"] == str(calibrated / "net.int8.tflite") and report["flatbuffer_bytes"] == len(flatbuffer)
    assert report["n_images"] == len(digits.test) == 359 and report["calib_images"] == 64 and report["seed"] == 3
    # The float top1 is PyTorch's own on the test split, computed here independently.
    from optnas.networks.standalone import load_chosen_network

    network, _, _ = load_chosen_network(calibrated)
    images, labels = digits.test.tensors(28)
    with torch.no_grad():
        top1 = 100.0 * float((network(images).argmax(1) == labels).float().mean())
    assert report["top1_float"] == pytest.approx(top1, abs=1e-6)
    assert 0 <= report["top1_tflm"] <= 100 and report["drop"] == pytest.approx(report["top1_float"] -
                                                                                report["top1_tflm"])
    assert 0.3 <= report["agreement"] <= 1
    assert (report["arena_bytes"], report["arena_head_bytes"], report["arena_tail_bytes"]) == arena_use(flatbuffer)
    assert report["arena_required_bytes"] >= report["arena_bytes"]
    assert set(report["ops"]) == set(ALLOWED_OPS) and sum(report["ops"].values()) == len(_model(flatbuffer)
                                                                                         .subgraphs[0].operators)
    assert report["input"]["shape"] == [1, 28, 28, 3] and report["input"]["scale"] > 0
    assert -128 <= report["input"]["zero_point"] <= 127 and report["output"]["shape"] == [1, 10]
    assert report["normalization"]["mean"] == list(digits.test.mean) and report["resolution"] == 28
    assert 0 < report["seconds"] < 90
    assert "fully-int8 TFLite" in result.stdout and "TFLM int8" in result.stdout
    assert "warning: int8 loses" in result.stderr  # --max-drop -100: always exceeded
    # What the board's memory holds: the measured arena and file with its stated reserves.
    board = BOARDS["esp32s3"]
    assert report["board"] == {"name": "esp32s3", "sram_kb": 512, "flash_kb": 8192,
                               "sram_used_kb": report["arena_required_bytes"] / 1024 + board.sram_reserve_kb,
                               "flash_used_kb": len(flatbuffer) / 1024 + board.flash_reserve_kb}
    assert "fits esp32s3" in result.stdout


@pytest.mark.parametrize("case", ["unknown module", "early exits", "no --int8", "over the board"])
def test_cli_refusals_write_nothing(case: str, calibrated: Path, chosen_early_exit: Path,  # noqa: F811
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, arguments = tmp_path / "chosen", ["--int8"]
    shutil.copytree(chosen_early_exit if case == "early exits" else calibrated, folder)
    if case == "unknown module":
        from optnas import export
        from optnas.networks.standalone import load_chosen_network

        def with_gelu(path: Path):
            network, subnet, weights = load_chosen_network(path)
            network.final_expand_layer.act = torch.nn.GELU()
            return network, subnet, weights

        monkeypatch.setattr(export, "load_chosen_network", with_gelu)
    elif case == "no --int8":
        arguments = []
    elif case == "over the board":
        # A width-1.0 network's file alone (over 2 MB) is more than a 1 MB board's flash.
        arguments = ["--int8", "--board", "nrf52840"]
    out = tmp_path / "net.tflite"
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    result = invoke_cli("export", str(folder), "--format", "tflite", *arguments, "--out", str(out))
    assert result.returncode == 2 and not out.exists()
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before
    message = result.stderr.strip().splitlines()[-1]
    expected = {"unknown module": "final_expand_layer.act (GELU)", "early exits": "early-exit",
                "no --int8": "add --int8", "over the board": "does not fit --board nrf52840"}[case]
    assert expected in message
