"""`optnas select` on a study whose front is known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import IntDistribution

from optnas.spaces.nasbench201 import OPERATIONS
from optnas.studies.selection import select_trials, trade_offs
from tests.conftest import invoke_cli

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
            user_attrs={"top1": top1, "macs": macs, "params": params,
                        "subnet": {"ops": [OPERATIONS[index % len(OPERATIONS)]] + ["none"] * 5}},
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
    result = invoke_cli("select", "--study-name", "known", "--storage", url, "-n", "2", "--prefer", "macs",
                        "--save", str(tmp_path / "chosen"))
    assert result.returncode == 0, result.stderr
    # The file names its space; the rest is the trial's subnet.
    assert json.loads((tmp_path / "chosen" / "net-macs_0" / "net.subnet").read_text()) == {
        "space": "nasbench201", "ops": ["none"] * 6}
    assert json.loads((tmp_path / "chosen" / "net-macs_1" / "net.stats").read_text())["macs"] == 19.0
    # A study not created by optnas has no configuration or supernet to pass on to `optnas train`.
    source = json.loads((tmp_path / "chosen" / "net-macs_1" / "source.json").read_text())
    assert source == {"study": "known", "trial": 4}
    rows = list(csv.DictReader(open(tmp_path / "chosen" / "selection.csv")))
    assert [row["trial"] for row in rows] == ["0", "4"]
    bad = invoke_cli("select", "--study-name", "nope", "--storage", url, "--save", str(tmp_path / "x"))
    assert bad.returncode == 2 and "no study named 'nope'" in bad.stderr


# (top1 %, avg_macs M, top1_robust, exits or None): all six are on the front of (top1, avg_macs).
EARLY_EXIT_POINTS = [
    (92.0, 40.0, 5.0, [1, 1, 0, 0]),
    (90.0, 30.0, 4.0, [1, 0, 0, 0]),
    (88.0, 20.0, 6.0, [0, 1, 0, 1]),
    (85.0, 10.0, 3.0, None),
    (80.0, 8.0, 7.0, [1, 0, 1, 0]),
    (70.0, 5.0, 2.0, None),
]


@pytest.fixture
def early_exit_study(tmp_path: Path) -> optuna.Study:
    study = optuna.create_study(study_name="ee", storage=f"sqlite:///{tmp_path / 'ee.db'}",
                                directions=["maximize", "minimize"])
    study.set_metric_names(["top1", "avg_macs"])
    for index, (top1, avg_macs, robust, exits) in enumerate(EARLY_EXIT_POINTS):
        subnet = {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 32, "n": index}
        if exits is not None:
            subnet.update(exits=exits, epsilon=[0.1] * 4)
        study.add_trial(optuna.trial.create_trial(
            params={"x": index}, distributions={"x": IntDistribution(0, 10)}, values=[top1, avg_macs],
            user_attrs={"top1": top1, "avg_macs": avg_macs, "top1_robust": robust, "macs": 50.0 - index,
                        "subnet": subnet},
        ))
    return study


@pytest.mark.parametrize(("prefer", "exits", "n", "expected"), [
    ("avg_macs", None, 3, [0, 5, 4]),
    ("top1_robust", None, 3, [0, 5, 3]),
    ("avg_macs", 2, 3, [0, 4, 2]),
    ("top1_robust", 0, 3, [3, 5]),
    ("macs", 1, 2, [1]),
])
def test_selection_of_early_exit_and_robust_figures(
    early_exit_study: optuna.Study, prefer: str, exits: int | None, n: int, expected: list[int]
) -> None:
    chosen = select_trials(early_exit_study, n, prefer, exits)
    assert [trial.number for trial, _ in chosen] == expected


def test_n_exits_without_match_is_a_clear_error(early_exit_study: optuna.Study, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="with 3 early exits"):
        select_trials(early_exit_study, 2, "avg_macs", 3)
    with pytest.raises(ValueError, match="exits must be zero or more"):
        select_trials(early_exit_study, 2, "avg_macs", -1)


def test_select_command_filters_exits_and_lists_optional_figures(
    early_exit_study: optuna.Study, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ee.db'}"
    result = invoke_cli("select", "--study-name", "ee", "--storage", url, "-n", "3", "--prefer", "avg_macs",
                     "--n-exits", "2", "--save", str(tmp_path / "chosen"), "--csv", str(tmp_path / "c.csv"))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert [row["trial"] for row in rows] == ["0", "4", "2"]
    assert [float(row["avg_macs"]) for row in rows] == [40.0, 8.0, 20.0]
    assert json.loads(rows[1]["subnet"])["exits"] == [1, 0, 1, 0]
    stats = json.loads((tmp_path / "chosen" / "net-avg_macs_1" / "net.stats").read_text())
    assert stats["top1_robust"] == 7.0 and stats["avg_macs"] == 8.0
