"""Boards: their memory becomes the bounds of the TFLite Micro figures, refused before any work when nothing fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optnas.boards import BOARDS, find_board
from optnas.config import SearchConfig
from optnas.errors import OptionError
from tests.conftest import invoke_cli

ISSUE_BOARDS = ("stm32f746", "stm32f412", "nrf52840", "rp2040", "rp2350", "esp32s3")


def test_boards_lists_every_board_with_its_budgets() -> None:
    result = invoke_cli("boards", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(ISSUE_BOARDS) <= set(rows)
    for row in rows.values():
        assert row["arena_budget_kb"] == row["sram_kb"] - row["sram_reserve_kb"] > 0
        assert row["tflite_budget_kb"] == row["flash_kb"] - row["flash_reserve_kb"] > 0
    # The datasheets' figures of the 1 MB boards the issue names.
    assert (rows["stm32f746"]["sram_kb"], rows["stm32f746"]["flash_kb"]) == (320, 1024)
    assert (rows["nrf52840"]["sram_kb"], rows["nrf52840"]["flash_kb"]) == (256, 1024)
    table = invoke_cli("boards")
    assert table.returncode == 0 and all(name in table.stdout for name in ISSUE_BOARDS)


def test_board_names_are_found_as_users_write_them() -> None:
    assert find_board("ESP32-S3") is BOARDS["esp32s3"]
    assert find_board("STM32F746") is BOARDS["stm32f746"]
    assert find_board("stm32") is None


def test_a_board_bounds_arena_and_flatbuffer_and_a_tighter_bound_stays() -> None:
    board = BOARDS["nrf52840"]
    config = SearchConfig(board="nRF52840").validate()
    assert config.board == "nrf52840"
    assert (config.arena_max, config.tflite_max) == (board.arena_budget_kb, board.tflite_budget_kb)
    assert config.constraint_bounds == {"arena_kb": board.arena_budget_kb, "tflite_kb": board.tflite_budget_kb}
    tighter = SearchConfig(board="nrf52840", arena_max=100).validate()
    assert (tighter.arena_max, tighter.tflite_max) == (100, board.tflite_budget_kb)
    # Stored and read back (a resumed study), the bounds are the same.
    assert SearchConfig.from_dict(config.to_dict()).validate() == config


def test_a_bound_looser_than_the_board_is_refused() -> None:
    with pytest.raises(OptionError, match=r"arena_max 300 exceeds the 224 KB that board nrf52840 leaves"):
        SearchConfig(board="nrf52840", arena_max=300).validate()


@pytest.mark.parametrize(("args", "message"), [
    (("--board", "nosuchboard"), "'nosuchboard' is not one of"),
    (("--board", "nrf52840", "--tflite-max", "2000"), "--tflite-max 2000 exceeds the 864 KB that --board nrf52840"),
    (("--board", "nrf52840", "--search-space", "eemobilenetv3"),
     "--board bounds the TensorFlow Lite Micro figures of --search-space mobilenetv3, not eemobilenetv3"),
])
def test_bad_boards_get_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path}/s.db", "--save", str(tmp_path / "run"), *args)
    assert result.returncode == 2
    assert message in result.stderr or message in result.stdout
    assert not list(tmp_path.iterdir())


def test_a_board_no_network_fits_is_refused_before_any_work(tmp_path: Path) -> None:
    # At width 1.0 the smallest network's flatbuffer is over 2 MB: no 1 MB board holds it.
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path}/s.db", "--save", str(tmp_path / "run"),
                        "--board", "stm32f746", "--width-mult", "1.0", "--lr", "32", "--ur", "32")
    assert result.returncode == 2, result.stdout
    output = result.stderr + result.stdout
    assert "no architecture fits --board stm32f746" in output and "KB tflite_kb where it leaves 864 KB" in output
    assert len([line for line in output.splitlines() if line.startswith("Error:")]) == 1
    assert not list(tmp_path.iterdir())
