"""`optnas select` on a study whose front is known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import IntDistribution

from optnas.studies.selection import select_trials, trade_offs
from tests.conftest import run_cli

# (top1 %, macs M, params M, feasible): the feasible front is trials 0-4; 5 is dominated and 6
# is the most accurate but infeasible.
POINTS = [
    (90.0, 100.0, 5.0, True),
    (88.0, 50.0, 3.0, True),
    (85.0, 30.0, 4.0, True),
    (70.0, 20.0, 1.0, True),
    (60.0, 19.0, 2.0, True),
    (80.0, 60.0, 0.5, True),
    (95.0, 10.0, 0.1, False),
]


@pytest.fixture
def known_study(tmp_path: Path) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'known.db'}"
    study = optuna.create_study(study_name="known", storage=url, directions=["maximize", "minimize"])
    study.set_metric_names(["top1", "macs"])
    for index, (top1, macs, params, feasible) in enumerate(POINTS):
        study.add_trial(optuna.trial.create_trial(
            params={"x": index}, distributions={"x": IntDistribution(0, 10)}, values=[top1, macs],
            constraints={"params": -1.0 if feasible else 1.0},
            user_attrs={"top1": top1, "macs": macs, "params": params, "subnet": {"ops": [str(index)]}},
        ))
    return url, study


def test_trade_off_prefers_the_knee() -> None:
    front = np.array([[0.0, 10.0], [1.0, 1.0], [10.0, 0.0], [5.0, 0.6]])
    scores = trade_offs(front)
    assert int(np.argmax(scores)) == 1


@pytest.mark.parametrize(("prefer", "expected"), [
    ("macs", [0, 4, 3]),
    ("params", [0, 3, 4]),
    ("trade-off", [0, 2, 1]),
])
def test_selection_per_preference(known_study: tuple[str, optuna.Study], prefer: str, expected: list[int]) -> None:
    _, study = known_study
    chosen = select_trials(study, 3, prefer)
    assert [trial.number for trial, _ in chosen] == expected
    assert chosen[0][1] == "most accurate"


def test_select_command_writes_folders_and_csv(known_study: tuple[str, optuna.Study], tmp_path: Path) -> None:
    url, _ = known_study
    result = run_cli("select", "--study-name", "known", "--storage", url, "-n", "2", "--prefer", "macs",
                     "--save", str(tmp_path / "chosen"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "chosen" / "net-macs_0" / "net.subnet").read_text()) == {"ops": ["0"]}
    assert json.loads((tmp_path / "chosen" / "net-macs_1" / "net.stats").read_text())["macs"] == 19.0
    rows = list(csv.DictReader(open(tmp_path / "chosen" / "selection.csv")))
    assert [row["trial"] for row in rows] == ["0", "4"]
    bad = run_cli("select", "--study-name", "nope", "--storage", url, "--save", str(tmp_path / "x"))
    assert bad.returncode == 2 and "no study named 'nope'" in bad.stderr
