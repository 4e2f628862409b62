"""A search refused for its options or its data leaves nothing on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import invoke_cli


@pytest.mark.parametrize("options", [
    ["--dataset", "cifar10"],  # no --data
    ["--dataset", "cifar10", "--data", "missing-folder"],
    ["--supernet-path", "missing.pth"],
    ["--mmax", "0.001"],  # no architecture is that small
])
def test_a_refused_search_creates_no_database_and_no_run_folder(options: list[str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path / 'refused.db'}", "--save",
                        str(tmp_path / "runs"), "--n-doe", "2", "--iterations", "0", *options)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []
