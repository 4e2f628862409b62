"""The README's quick start, run as written but at a reduced size: a supernet trained on the spot
on digits, then the search, ending with a feasible Pareto set."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from optnas.networks.costs import profile
from tests.conftest import invoke_cli

README = Path(__file__).resolve().parents[1] / "README.md"
# Smaller than the quick start, the same path: 64 training images (one step of 64 per epoch),
# one epoch of the largest network alone, one of the sandwich rule, 3 trials (2 of the design,
# one iteration of the surrogate with one candidate; each scores 1374 validation images).
REDUCED = ("--supernet-epochs", "2", "--vld-size", "1374", "--n-doe", "2", "--iterations", "1", "--n-iter", "1")


def quick_start_arguments() -> list[str]:
    """The arguments of the first `optnas search` command of the README's quick start."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"optnas search ([^\n&]+)", section)
    assert command is not None, "the quick start has no `optnas search` command"
    return shlex.split(command.group(1))


def test_quick_start_trains_a_supernet_on_the_spot_and_searches(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    arguments = quick_start_arguments()
    assert "--supernet-path" not in arguments  # the quick start trains its own supernet
    monkeypatch.chdir(tmp_path)
    # Repeated options: click keeps the last value, so the reduced sizes override the README's.
    result = invoke_cli("search", *arguments, *REDUCED, "--quiet")
    assert result.returncode == 0, result.stderr
    storage = next(arguments[i + 1] for i, a in enumerate(arguments) if a == "--storage")
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    for trial in complete:
        assert trial.user_attrs["macs"] == pytest.approx(profile(trial.user_attrs["subnet"], 10)["macs"])
        assert 0.0 <= trial.values[0] <= 100.0
    assert study.best_trials
    # The supernet was trained here, with the recipe the checkpoint records: one epoch of each phase.
    (checkpoint_file,) = Path(tmp_path).rglob("supernet-digits-*.pth")
    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
    assert checkpoint["recipe"]["epochs"] == 2 and checkpoint["recipe"]["warmup_epochs"] == 1
    assert [record["phase"] for record in checkpoint["history"]] == ["largest", "sandwich"]
    lowest = int(arguments[arguments.index("--lr") + 1]) if "--lr" in arguments else 32
    assert checkpoint["recipe"]["resolutions"][0] == lowest
