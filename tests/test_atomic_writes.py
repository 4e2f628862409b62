"""Files that a kill or an error while writing must not leave half written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from optnas.artifacts import write_json
from optnas.latency.device import save_json


@pytest.mark.parametrize("write", [write_json, save_json])
def test_a_crash_mid_write_leaves_the_previous_file_whole(write: Callable[[Path, Any], None], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "net.stats"
    write(path, {"top1": 91.5})
    before = path.read_text()

    def half_then_crash(content: Any, file: Any, **kwargs: Any) -> None:
        file.write('{"top1": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", half_then_crash)
    with pytest.raises(OSError, match="No space left"):
        write(path, {"top1": 95.0})
    assert path.read_text() == before
    assert [file.name for file in tmp_path.iterdir()] == ["net.stats"]


def test_write_json_writes_indented_json_with_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "source.json"
    content = {"study": "s", "config": {"lr": 32, "objectives": ["top1", "params"]}}
    write_json(path, content)
    assert path.read_text() == json.dumps(content, indent=2) + "\n"
    write_json(path, {"study": "t"})
    assert json.loads(path.read_text()) == {"study": "t"}
