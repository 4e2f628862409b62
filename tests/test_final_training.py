"""`optnas train`: final training of a chosen architecture, resumable bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import optnas.training.final as final_training
from optnas.artifacts import FINAL_FILE, STATE_FILE, read_subnet
from optnas.networks.costs import profile
from optnas.networks.exit_costs import exit_profile
from optnas.networks.standalone import build_network
from optnas.spaces import EEMobileNetV3Space, MobileNetV3Space
from optnas.training.final import train_final
from tests.conftest import invoke_cli

# 1437 training images minus 1250 held out: a short epoch on a small training split.
VLD_SIZE = 1250
# The resume tests train on the tiny CIFAR-10 tree instead: 64 training images (two steps of 32
# per epoch), 20 validation and 20 test images. Bit-for-bit equality does not depend on the size,
# and scoring 1250 + 359 digits images after each of three runs took most of their time.
TINY = {"dataset": "cifar10", "vld_size": 20}


def _chosen_folder(path: Path, subnet: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "net.subnet").write_text(json.dumps(subnet or MobileNetV3Space().smallest()))
    (path / "net.stats").write_text(json.dumps({"top1": 12.5, "macs": 1.0}))
    return path


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / FINAL_FILE, map_location="cpu", weights_only=True)["state_dict"]


def test_resumed_training_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, supernet_file: Path, tiny_cifar10: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = dict(epochs=2, **TINY, data_dir=str(tiny_cifar10), supernet_path=supernet_file, progress=False,
                   batch_size=32)
    straight = train_final(_chosen_folder(tmp_path / "straight"), **options)

    interrupted = _chosen_folder(tmp_path / "interrupted")
    write = final_training.save_checkpoint

    def write_then_stop(content: dict, path: Path) -> None:
        write(content, path)
        if path.name == STATE_FILE:
            raise KeyboardInterrupt

    monkeypatch.setattr(final_training, "save_checkpoint", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_final(interrupted, **options)
    monkeypatch.undo()
    checkpoint = torch.load(interrupted / STATE_FILE, map_location="cpu", weights_only=True)
    assert checkpoint["training"]["epoch"] == 1 and not (interrupted / FINAL_FILE).exists()
    resumed = train_final(interrupted, resume=True, **options)

    a, b = _state(tmp_path / "straight"), _state(interrupted)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert resumed["top1"] == straight["top1"] and resumed["top1_test"] == straight["top1_test"]
    # The weights did change, and the search's figures were kept beside the final ones.
    start = final_training.initial_network(
        tmp_path / "straight", MobileNetV3Space().smallest(), 10, supernet_file)[0].state_dict()
    assert not torch.equal(start["classifier.linear.weight"], a["classifier.linear.weight"])
    assert straight["search_top1"] == 12.5 and 0 <= straight["top1_test"] <= 100
    assert straight["macs"] == profile(MobileNetV3Space().smallest(), 10)["macs"]
    assert straight["train"]["epochs"] == 2


def test_early_exit_training_resumes_and_scores_with_the_thresholds(
    tmp_path: Path, supernet_file: Path, tiny_cifar10: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subnet = EEMobileNetV3Space().canonical(
        {**MobileNetV3Space().smallest(), "exits": [1, 0, 1, 0], "epsilon": [0.5, 0.1, 0.3, 0.1]})
    options = dict(epochs=2, **TINY, data_dir=str(tiny_cifar10), supernet_path=supernet_file, progress=False,
                   batch_size=32)
    straight = train_final(_chosen_folder(tmp_path / "straight", subnet), **options)

    interrupted = _chosen_folder(tmp_path / "interrupted", subnet)
    write = final_training.save_checkpoint

    def write_then_stop(content: dict, path: Path) -> None:
        write(content, path)
        if path.name == STATE_FILE:
            raise KeyboardInterrupt

    monkeypatch.setattr(final_training, "save_checkpoint", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_final(interrupted, **options)
    monkeypatch.undo()
    resumed = train_final(interrupted, resume=True, **options)
    a, b = _state(tmp_path / "straight"), _state(interrupted)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert any(key.startswith("heads.1.") for key in a)
    for key in ("top1", "top1_test", "avg_macs", "avg_macs_test", "exit_ratios", "exit_top1_test"):
        assert resumed[key] == straight[key], key
    # The figures agree with each other: ratios sum to 1 and avg_macs is their weighted cost.
    costs = exit_profile(subnet, 10)
    assert straight["exit_macs"] == costs["exit_macs"] and straight["params"] == costs["params"]
    assert straight["epsilon"] == [0.5, 0.3]
    for suffix in ("", "_test"):
        ratios = straight[f"exit_ratios{suffix}"]
        assert len(ratios) == 3 and sum(ratios) == pytest.approx(1.0)
        assert straight[f"avg_macs{suffix}"] == pytest.approx(sum(r * m for r, m in zip(ratios, costs["exit_macs"])))
        assert 0 <= straight[f"top1{suffix}"] <= 100 and len(straight[f"exit_top1{suffix}"]) == 3
    # The heads were trained: they differ from the fresh ones the network was built with.
    fresh = build_network(subnet, 10).state_dict()
    assert not torch.equal(fresh["heads.0.linear.weight"], a["heads.0.linear.weight"])


def test_train_command_writes_final_stats(tmp_path: Path, supernet_file: Path) -> None:
    folder = _chosen_folder(tmp_path / "net")
    result = invoke_cli("train", str(folder), "--epochs", "1", "--supernet-path", str(supernet_file),
                     "--vld-size", str(VLD_SIZE), "--quiet")
    assert result.returncode == 0, result.stderr
    stats = json.loads((folder / "net.stats").read_text())
    assert {"top1", "top1_test", "params", "macs", "activations"} <= stats.keys()
    assert f"top1_test {stats['top1_test']:.2f} %" in result.stdout
    assert (folder / FINAL_FILE).is_file() and (folder / STATE_FILE).is_file()


def test_train_errors_are_one_line(tmp_path: Path) -> None:
    folder = _chosen_folder(tmp_path / "net")
    result = invoke_cli("train", str(folder), "--epochs", "1")
    assert result.returncode == 2 and "no ckpt.pth and no supernet is known" in result.stderr
    result = invoke_cli("train", str(folder), "--resume")
    assert result.returncode == 2 and "train-state.pth does not exist" in result.stderr
    early_exit = _chosen_folder(tmp_path / "ee", {**MobileNetV3Space().smallest(), "exits": [1, 0, 0, 0]})
    result = invoke_cli("train", str(early_exit), "--supernet-path", str(tmp_path / "x.pth"))
    assert result.returncode == 2 and "lacks the key 'epsilon'" in result.stderr
    result = invoke_cli("train", str(tmp_path / "missing"))
    assert result.returncode == 2 and "net.subnet: no such file" in result.stderr


def test_early_exit_thresholds_are_the_ones_the_search_scored(tmp_path: Path) -> None:
    subnet = {**MobileNetV3Space().smallest(), "exits": [0, 1, 0, 1], "epsilon": [0.1, 0.5, 0.1, 0.3]}
    folder = _chosen_folder(tmp_path / "sampled", subnet)
    assert read_subnet(folder)["epsilon"] == [0.1, 0.5, 0.1, 0.3]
    # --tune-epsilon stores the thresholds it chose in the stats, one per exit.
    (folder / "net.stats").write_text(json.dumps({"top1": 50.0, "epsilon": [0.9, 0.2]}))
    assert read_subnet(folder)["epsilon"] == [0.1, 0.9, 0.1, 0.2]
    (folder / "net.stats").write_text(json.dumps({"epsilon": [0.9]}))
    with pytest.raises(ValueError, match="one threshold per exit"):
        read_subnet(folder)
    (folder / "net.stats").write_text(json.dumps({"epsilon": [0.9, 0.25]}))
    with pytest.raises(ValueError, match=r"net\.stats: 'epsilon' holds 0\.25"):
        read_subnet(folder)


@pytest.mark.parametrize("command", ["select", "train", "export", "report"])
def test_after_search_commands_explain_every_option(command: str) -> None:
    from optnas.cli import main

    options = [param for param in main.commands[command].params if param.param_type_name == "option"]
    assert options and all(option.help for option in options)
    assert invoke_cli(command, "--help").returncode == 0


def test_training_starts_from_the_searchs_checkpoint(tmp_path: Path) -> None:
    from optnas.networks.supernet import build_supernet, extract_subnet

    folder = _chosen_folder(tmp_path / "net")
    saved = extract_subnet(build_supernet(10, seed=5), MobileNetV3Space().smallest()).state_dict()
    torch.save({"state_dict": saved}, folder / "ckpt.pth")
    stats = train_final(folder, epochs=0, vld_size=VLD_SIZE, progress=False)
    assert stats["train"]["start"] == str(folder / "ckpt.pth")
    final = _state(folder)
    # Zero epochs: the saved weights, with only the BN statistics recomputed on training images.
    for key, value in saved.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(final[key], value), key
    assert not torch.equal(final["blocks.1.conv.point_linear.bn.running_var"],
                           saved["blocks.1.conv.point_linear.bn.running_var"])
