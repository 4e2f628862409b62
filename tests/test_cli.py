"""Small CLI commands: help texts, profile, config files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optnas.networks.costs import profile
from optnas.networks.memory import memory
from optnas.networks.tflm_memory import tflm_memory
from tests.conftest import invoke_cli, run_cli

SUBNET = {"ks": [3, 5, 7, 3] * 5, "e": [3, 4, 6, 4] * 5, "d": [2, 3, 4, 2, 3], "r": 64, "w": 1.0}


def test_profile_prints_json_matching_the_library(tmp_path: Path) -> None:
    path = tmp_path / "net.subnet"
    path.write_text(json.dumps(SUBNET))
    result = invoke_cli("profile", str(path), "--n-classes", "10", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {"params", "macs", "activations", "peak_activations", "flash_kb", "sram_kb",
                            "flash_kb_float32", "sram_kb_float32", "arena_kb", "arena_head_kb", "arena_tail_kb",
                            "tflite_kb"}
    assert figures == {**profile(SUBNET, 10), **memory(SUBNET, 10), **tflm_memory(SUBNET, 10)}
    table = invoke_cli("profile", str(path), "--n-classes", "10").stdout
    assert "macs" in table and f"{figures['macs']:.4f}" in table
    assert f"{figures['arena_kb']:.1f} KB  TFLite Micro arena" in table


def test_profile_rejects_bad_files_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.subnet"
    for content in ["not json", json.dumps({**SUBNET, "d": [5, 2, 2, 2, 2]}), json.dumps({"ks": [3]})]:
        bad.write_text(content)
        result = invoke_cli("profile", str(bad))
        assert result.returncode == 2
        assert "bad.subnet" in result.stderr and "Traceback" not in result.stderr


def test_every_search_option_is_explained() -> None:
    from optnas.config import option_key, options

    text = run_cli("search", "--help").stdout
    for field in options():
        assert "--" + option_key(field).replace("_", "-") in text
    for command in ("resume", "worker", "studies", "trials", "select", "dashboard", "profile"):
        assert invoke_cli(command, "--help").returncode == 0


def test_config_file_values_and_flag_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    (tmp_path / "search.toml").write_text(
        'search_space = "nasbench201"\ndataset = "cifar10"\nsec-obj = "params"\n'
        "n_doe = 4\niterations = 1\nn_iter = 2\nseed = 7\n"
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.chdir(tmp_path)
    result = invoke_cli("search", "--config", str(tmp_path / "search.toml"), "--seed", "9", "--storage", url,
                        "--study-name", "cfg", "--quiet", "--save", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="cfg", storage=url, sampler=optuna.samplers.RandomSampler())
    assert study.user_attrs["config"]["n_doe"] == 4 and study.user_attrs["config"]["seed"] == 9


def test_bad_values_are_usage_errors_without_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    cases = [
        (["--n-doe", "0"], "--n-doe"),
        (["--lr", "64", "--ur", "32"], "resolution"),
        (["--search-space", "nasbench201", "--dataset", "digits"], "nasbench201"),
        (["--top1min", "120"], "--top1min"),
        (["--device", "cuda:3"], "CUDA"),
    ]
    for args, expected in cases:
        result = invoke_cli("search", "--storage", url, "--quiet", "--save", str(tmp_path / "run"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s.db").exists() or "optnas" not in (tmp_path / "s.db").read_bytes().decode("latin1")


@pytest.mark.parametrize("command", [
    ["search", "--storage", "{db}"], ["resume", "--study-name", "s", "--storage", "{db}"],
    ["worker", "--study-name", "s", "--storage", "{db}"], ["supernet", "train", "--out", "{tmp}/s.pth"],
    ["train", "{tmp}/net"], ["export", "{tmp}/net"], ["ood", "--trial", "0", "--study-name", "s", "--storage", "{db}"],
])
def test_every_device_option_refuses_an_unknown_device_before_anything_runs(command: list[str],
                                                                            tmp_path: Path) -> None:
    # Neither the storage nor the folder exists: the device is refused first, as the option is parsed.
    args = [arg.format(db=f"sqlite:///{tmp_path / 's.db'}", tmp=tmp_path) for arg in command]
    result = invoke_cli(*args, "--device", "tpu:7")
    assert result.returncode == 2
    assert result.stderr.endswith("Error: --device 'tpu:7' is not a torch device (e.g. cpu, cuda, cuda:1)\n")
    assert list(tmp_path.iterdir()) == []


def test_a_device_from_the_config_file_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "search.yaml").write_text("device: tpu:7\n")
    result = invoke_cli("search", "--config", str(tmp_path / "search.yaml"), "--quiet",
                        "--storage", f"sqlite:///{tmp_path / 's.db'}", "--save", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.endswith("Error: --device 'tpu:7' is not a torch device (e.g. cpu, cuda, cuda:1)\n")


@pytest.mark.parametrize("command", [["supernet", "train", "--out", "s.pth"], ["latency", "table", "--out", "lut.json"],
                                     ["latency", "layers", "folder"]])
@pytest.mark.parametrize("flag", ["--lr", "--ur"])
def test_every_resolution_option_refuses_what_the_spaces_do_not_allow(command: list[str], flag: str,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke_cli(*command, flag, "4")
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []
    assert f"Error: Invalid value for '{flag}': 4 is not in the range 8<=x<=1024." in result.stderr
