"""Supernets below width 1.0 (no feature mix layer), end to end on digits: trained by `optnas supernet
train` and on the spot by a search, at tiny sizes (64 training images, one epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from optnas.networks.memory import memory
from optnas.networks.supernet import load_supernet
from tests.conftest import invoke_cli

# 1374 of digits' 1438 training images held out: one step of 64 per epoch.
TINY = ("--vld-size", "1374", "--lr", "16", "--ur", "16", "--threads", "1")


def test_supernet_train_at_width_0_35_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "supernet.pth"
    result = invoke_cli("supernet", "train", "--width-mult", "0.35", "--epochs", "1", "--out", str(path), *TINY)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["epochs"] == 1
    assert torch.load(path, map_location="cpu", weights_only=True)["width_mult"] == 0.35
    supernet, messages = load_supernet(path, 10, 0.35)
    assert messages == [] and isinstance(supernet.feature_mix_layer, torch.nn.Identity)


def test_search_at_width_0_35_trains_its_supernet_on_the_spot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = "sqlite:///narrow.db"
    result = invoke_cli("search", "--storage", storage, "--width-mult", "0.35", "--supernet-epochs", "1",
                        "--n-doe", "2", "--iterations", "0", "--n-epochs", "0", "--sec-obj", "flash_kb", "--quiet",
                        *TINY)
    assert result.returncode == 0, result.stderr
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for trial in trials:
        subnet = trial.user_attrs["subnet"]
        assert subnet["w"] == 0.35
        assert trial.values[1] == pytest.approx(memory(subnet, 10)["flash_kb"])
    # The design holds the smallest network: it fits a 1 MB board with room to spare.
    assert min(trial.values[1] for trial in trials) <= 300
    (checkpoint,) = Path(tmp_path).rglob("supernet-digits-w0.35-*.pth")
    assert load_supernet(checkpoint, 10, 0.35)[0].width_mult == 0.35
