"""The benchmark command's smoke run: every stage runs and the table is complete."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_one_row_per_measurement(run_all, capsys) -> None:
    rows = run_all.main(["--quick", "--postgres", "none"])
    table = capsys.readouterr().out
    assert {row.item for row in rows} == {"1", "2", "3", "4", "5"}
    assert table.count("\n") == len(rows) + 2
    # Every ratio is a measured, positive figure; profiling must agree with torchprofile.
    assert all(row.ratio > 0 for row in rows if row.ratio is not None)
    assert rows[-1].what.startswith("figures identical") and rows[-1].met
