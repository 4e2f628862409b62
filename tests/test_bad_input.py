"""Bad input: one clear line, the documented exit code, and the storage left as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from tests.conftest import invoke_cli

BASE = ["search", "--quiet", "--study-name", "fresh", "--n-doe", "2", "--iterations", "0"]


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return list(connection.iterdump())


@pytest.fixture(scope="module")
def existing_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage that already holds one study."""
    folder = tmp_path_factory.mktemp("db")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = invoke_cli("search", "--search-space", "nasbench201", "--dataset", "cifar10", "--sec-obj", "params",
                            "--n-doe", "2", "--iterations", "0", "--quiet", "--storage", f"sqlite:///{folder / 's.db'}",
                            "--save", str(folder / "run"))
    assert result.returncode == 0, result.stderr
    return folder / "s.db"


def _cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    foreign = tmp / "foreign.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, foreign)
    truncated = tmp / "truncated.pth"
    truncated.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    blocker = tmp / "a-file"
    blocker.write_text("")
    return [
        (["--sec-obj", "latency"], 2, "latency needs --latency-table"),
        (["--sec-obj", "speed"], 2, "Invalid value for '--sec-obj'"),
        (["--lmax", "-1"], 2, "--lmax must be a positive number"),
        (["--sampler", "cmaes"], 2, "Invalid value for '--sampler'"),
        (["--pmax", "0.5"], 2, "no architecture satisfies --pmax 0.5"),
        (["--lr", "4", "--ur", "4"], 2, "outside 8..1024"),
        (["--lr", "64", "--ur", "32"], 2, "lowest resolution 64 exceeds highest resolution 32"),
        (["--dataset", "cifar10", "--data", str(tmp)], 2, "cifar-10-batches-py"),
        (["--supernet-path", str(foreign)], 2, "foreign.pth"),
        (["--supernet-path", str(truncated)], 2, "truncated.pth"),
        (["--supernet-path", str(tmp / "missing.pth")], 2, "missing.pth"),
        (["--save", str(blocker / "run")], 2, "cannot write there"),
    ]


def test_bad_inputs_table(existing_db: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{existing_db}"
    before = _dump(existing_db)
    for args, code, message in _cases(tmp_path):
        save = [] if "--save" in args else ["--save", str(tmp_path / "run")]
        result = invoke_cli(*BASE, "--storage", url, *save, *args)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert _dump(existing_db) == before, f"{args} changed the storage"


def test_unreachable_database_masks_the_password(tmp_path: Path) -> None:
    result = invoke_cli(*BASE, "--search-space", "nasbench201", "--dataset", "cifar10", "--sec-obj", "params",
                        "--storage", "postgresql://alice:s3cr3t@127.0.0.1:1/nas", "--save", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "postgresql://alice:***@127.0.0.1:1/nas" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout and "Traceback" not in result.stderr
