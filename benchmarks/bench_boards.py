"""A network for each 1 MB board, end to end, as a user runs it: search, select, train, export to TFLite Micro.

For every board (default: STM32F746 and nRF52840) the commands of the README's TinyML preset
run in a fresh folder: ``optnas search --board B --width-mult W --sec-obj arena_kb``,
``optnas select -n 1``, ``optnas train --epochs E`` and ``optnas export --format tflite
--int8``. The table holds what the search predicted (``arena_kb``, ``tflite_kb``), what TFLite
Micro measured (arena bytes, flatbuffer bytes), the test top1 in float and in TFLM int8, and
whether the network fits: measured arena + the board's SRAM reserve <= SRAM, flatbuffer + the
flash reserve <= flash. The supernet trained by the first board's search is reused by the
next ones (``--supernet-path``): it does not depend on the board.

Run as ``python benchmarks/bench_boards.py [--boards stm32f746 nrf52840] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from optnas.boards import BOARDS

KB = 1024


def _run(*args: str, cwd: Path) -> float:
    """Run ``optnas ARGS`` in ``cwd``; return its wall time (s), stop on failure."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "optnas.cli", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"optnas {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def run_board(name: str, folder: Path, args: argparse.Namespace, supernet: Path | None) -> dict:
    """Search, select, train and export a network for one board; return its row."""
    board = BOARDS[name]
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    search = ["search", "--storage", storage, "--study-name", name, "--board", name, "--width-mult",
              str(args.width), "--sec-obj", "arena_kb", "--n-doe", str(args.n_doe), "--iterations",
              str(args.iterations), "--n-iter", str(args.n_iter), "--n-epochs", "0", "--lr", str(args.lr),
              "--ur", str(args.ur), "--rstep", str(args.rstep), "--save", "run", "--seed", str(args.seed)]
    search += ["--supernet-path", str(supernet)] if supernet else ["--supernet-epochs", str(args.supernet_epochs)]
    seconds = {"search": _run(*search, cwd=folder)}
    seconds["select"] = _run("select", "--storage", storage, "--study-name", name, "-n", "1", "--save", "chosen",
                             cwd=folder)
    chosen = next((folder / "chosen").glob("net-*"))
    seconds["train"] = _run("train", str(chosen), "--epochs", str(args.epochs), cwd=folder)
    seconds["export"] = _run("export", str(chosen), "--format", "tflite", "--int8", cwd=folder)
    stats = json.loads((chosen / "net.stats").read_text())
    export = json.loads((chosen / "export-tflite-int8.json").read_text())
    arena, flatbuffer = export["arena_required_bytes"], export["flatbuffer_bytes"]
    return {
        "board": name, "subnet": json.loads((chosen / "net.subnet").read_text()),
        "arena_kb_predicted": stats["arena_kb"], "arena_kb_tflm": arena / KB,
        "tflite_kb_predicted": stats["tflite_kb"], "tflite_kb_file": flatbuffer / KB,
        "top1_float": export["top1_float"], "top1_tflm": export["top1_tflm"], "drop": export["drop"],
        "agreement": export["agreement"],
        "sram_used_kb": arena / KB + board.sram_reserve_kb, "sram_kb": board.sram_kb,
        "flash_used_kb": flatbuffer / KB + board.flash_reserve_kb, "flash_kb": board.flash_kb,
        "fits": arena / KB + board.sram_reserve_kb <= board.sram_kb
        and flatbuffer / KB + board.flash_reserve_kb <= board.flash_kb,
        "seconds": seconds, "supernet": str(supernet or next((folder / "run").glob("supernet-*.pth"))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", nargs="+", default=["stm32f746", "nrf52840"], choices=sorted(BOARDS))
    parser.add_argument("--out", type=Path, default=Path("bench-boards"), help="working folder")
    parser.add_argument("--width", type=float, default=0.35, help="--width-mult of the searches")
    parser.add_argument("--supernet-epochs", type=int, default=6)
    parser.add_argument("--n-doe", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--n-iter", type=int, default=4)
    parser.add_argument("--lr", type=int, default=32)
    parser.add_argument("--ur", type=int, default=48)
    parser.add_argument("--rstep", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=15, help="optnas train --epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows, supernet = [], None
    for name in args.boards:
        row = run_board(name, args.out / name, args, supernet)
        supernet = Path(row["supernet"]).resolve()
        rows.append(row)
    (args.out / "boards.json").write_text(json.dumps(rows, indent=2))
    print("| board | r | arena KB predicted / TFLM | tflite KB predicted / file | SRAM used / board | "
          "flash used / board | top1 float / TFLM int8 | drop | agreement | fits | search+select+train+export s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row["seconds"]
        print(f"| {row['board']} | {row['subnet']['r']} | {row['arena_kb_predicted']:.2f} / {row['arena_kb_tflm']:.2f} "
              f"| {row['tflite_kb_predicted']:.1f} / {row['tflite_kb_file']:.1f} "
              f"| {row['sram_used_kb']:.1f} / {row['sram_kb']} | {row['flash_used_kb']:.1f} / {row['flash_kb']} "
              f"| {row['top1_float']:.2f} / {row['top1_tflm']:.2f} | {row['drop']:.2f} | {row['agreement']:.3f} "
              f"| {'yes' if row['fits'] else 'NO'} "
              f"| {s['search']:.0f}+{s['select']:.0f}+{s['train']:.0f}+{s['export']:.0f} |")
    return 0 if all(row["fits"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
