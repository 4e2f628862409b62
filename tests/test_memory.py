"""Flash and SRAM of int8 mobilenetv3 networks from the encoding, and their constraints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from optnas.networks.costs import profile
from optnas.networks.early_exits import EarlyExitNetwork
from optnas.networks.memory import KB, head_peak, memory, weight_tensors
from optnas.networks.supernet import build_supernet, extract_subnet
from optnas.spaces import EEMobileNetV3Space, MobileNetV3Space
from tests.conftest import invoke_cli, tiny_cifar10_options


@pytest.mark.parametrize("seed", [0, 1])
def test_weight_tensors_are_the_networks_with_batch_norm_folded(seed: int, supernet: torch.nn.Module) -> None:
    for subnet in MobileNetV3Space(resolutions=[32, 64]).sample(np.random.default_rng(seed), 3):
        _assert_tensors_are_the_networks(extract_subnet(supernet, subnet), subnet)


def _assert_tensors_are_the_networks(network: torch.nn.Module, subnet: dict) -> None:
    layers = [m for m in network.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    tensors = weight_tensors(subnet, 10)
    assert sorted(t.weights for t in tensors) == sorted(m.weight.numel() for m in layers)
    # A folded batch normalization becomes the bias of the convolution before it.
    biases = sum(m.num_features for m in norms) + sum(m.bias.numel() for m in layers if m.bias is not None)
    assert sum(t.channels for t in tensors if t.bias) == biases
    assert sum(t.channels for t in tensors) == sum(m.weight.shape[0] for m in layers)


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75])
def test_narrow_networks_have_no_feature_mix(width: float) -> None:
    supernet = build_supernet(10, width)
    space = MobileNetV3Space(width_mult=width, resolutions=[32])
    for subnet in (space.smallest(), space.largest()):
        _assert_tensors_are_the_networks(extract_subnet(supernet, subnet), subnet)


def test_the_narrowest_smallest_network_fits_a_1mb_board_and_width_1_is_unchanged() -> None:
    # Weights do not depend on the resolution: the same figure at r=32 and r=96.
    for resolution in (32, 96):
        narrowest = MobileNetV3Space(width_mult=0.35, resolutions=[resolution]).smallest()
        assert memory(narrowest, 10)["flash_kb"] == pytest.approx(168.8, abs=0.05)
        assert memory(narrowest, 10)["flash_kb"] <= 300
        # The figure from before the narrow widths existed.
        smallest = MobileNetV3Space(resolutions=[resolution]).smallest()
        assert memory(smallest, 10)["flash_kb"] * KB == 2_270_682


def test_early_exit_heads_add_their_layers_and_working_set(supernet: torch.nn.Module) -> None:
    subnets = EEMobileNetV3Space(resolutions=[32, 64]).sample(np.random.default_rng(5), 6)
    subnets = [s for s in subnets if any(s["exits"])]
    assert subnets
    for subnet in subnets:
        network = EarlyExitNetwork(extract_subnet(supernet, subnet.backbone()), subnet, 10).eval()
        _assert_tensors_are_the_networks(network, subnet)
        # A head's working set, read off the running network: its input, the pooled copy, the conv output.
        sizes: list[dict[str, int]] = []
        hooks = [head.register_forward_pre_hook(lambda m, i, sizes=sizes: sizes.append({"in": i[0].numel()}))
                 for head in network.heads]
        hooks += [head.pool.register_forward_hook(
            lambda m, i, o, sizes=sizes: sizes[-1].__setitem__(
                "pool", o.numel() if isinstance(m, torch.nn.MaxPool2d) else 0))
            for head in network.heads]
        hooks += [head.conv.register_forward_hook(lambda m, i, o, sizes=sizes: sizes[-1].__setitem__("conv", o.numel()))
                  for head in network.heads]
        with torch.no_grad():
            network(torch.zeros(1, 3, subnet["r"], subnet["r"]))
        for hook in hooks:
            hook.remove()
        assert len(sizes) == len(network.heads)
        assert head_peak(subnet) == max(s["in"] + s["pool"] + s["conv"] for s in sizes)
        peak = max(profile(subnet.backbone(), 10)["peak_activations"] * 1e6, head_peak(subnet))
        assert memory(subnet, 10)["sram_kb"] == pytest.approx(peak / KB)


def test_memory_figures() -> None:
    subnet = MobileNetV3Space(resolutions=[48]).sample(np.random.default_rng(2), 1)[0]
    tensors = weight_tensors(subnet, 10)
    figures = memory(subnet, 10)
    weights = sum(t.weights for t in tensors)
    channels = sum(t.channels for t in tensors)
    biases = sum(t.channels for t in tensors if t.bias)
    assert figures["flash_kb"] == pytest.approx((weights + 5 * channels + 12 * biases) / KB)
    assert figures["flash_kb_float32"] == pytest.approx(4 * (weights + biases) / KB)
    peak = profile(subnet, 10)["peak_activations"] * 1e6
    assert figures["sram_kb"] == pytest.approx(peak / KB)
    assert figures["sram_kb_float32"] == pytest.approx(4 * peak / KB)


def test_flash_and_sram_constraints_in_a_search(supernet_file: Path, tiny_cifar10: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    space = MobileNetV3Space(resolutions=[32])
    smallest, largest = memory(space.smallest(), 10), memory(space.largest(), 10)
    flash_max = (smallest["flash_kb"] + largest["flash_kb"]) / 2
    url = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.chdir(tmp_path)
    result = invoke_cli(
        "search", "--storage", url, "--study-name", "mem", "--supernet-path", str(supernet_file),
        "--n-doe", "4", "--iterations", "0", "--n-epochs", "0", *tiny_cifar10_options(tiny_cifar10),
        "--sec-obj", "sram_kb", "--flash-max", f"{flash_max}",
        "--save", str(tmp_path / "run"), "--quiet",
    )
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="mem", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    for trial in complete:
        figures = memory(trial.user_attrs["subnet"], 10)
        assert trial.values[1] == pytest.approx(figures["sram_kb"])
        assert trial.constraints["flash_kb"] == pytest.approx(figures["flash_kb"] - flash_max)
    assert study.best_trials and all(t.user_attrs["flash_kb"] <= flash_max for t in study.best_trials)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flash-max", "1024"], "no architecture satisfies --flash-max 1024"),
        (["--sram-max", "-3"], "--sram-max must be a positive number"),
        (["--first-obj", "top1_robust", "--sec-obj", "params", "--int8"],
         "--int8 scores top1 after quantization; top1_robust measures float networks"),
        (["--search-space", "nasbench201", "--dataset", "cifar10", "--sec-obj", "params", "--flash-max", "900"],
         "has no figure for --flash-max to bound"),
    ],
)
def test_memory_options_are_checked(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study-name", "x",
                        "--save", str(tmp_path / "run"), "--quiet", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_profile_prints_memory(tmp_path: Path) -> None:
    subnet = MobileNetV3Space(resolutions=[32]).largest()
    (tmp_path / "net.subnet").write_text(json.dumps(subnet))
    result = invoke_cli("profile", str(tmp_path / "net.subnet"), "--n-classes", "10", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["flash_kb"] == pytest.approx(memory(subnet, 10)["flash_kb"])
