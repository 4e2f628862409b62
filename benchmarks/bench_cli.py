"""Time the quick commands (`optnas --help`, `studies`, `trials`) against Optuna's own floor.

Each command runs in a fresh interpreter, as a user starts it; the floor is a fresh
interpreter that only imports Optuna, loads the same study and reads its trials. The commands
and the floor take turns, after one untimed warm-up each, and the medians are printed with the
spread. The study is a SQLite file of 20 two-objective trials written first.

Run as ``python benchmarks/bench_cli.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

FLOOR = (
    "import optuna; optuna.logging.set_verbosity(optuna.logging.WARNING); "
    "optuna.load_study(study_name='bench', storage='{url}').get_trials()"
)


def _seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name="bench", storage=url, directions=["maximize", "minimize"])
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=20)
        optnas = [sys.executable, "-m", "optnas.cli"]
        commands = {
            "optnas --help": [*optnas, "--help"],
            "optnas studies": [*optnas, "studies", "--storage", url],
            "optnas trials": [*optnas, "trials", "--study-name", "bench", "--storage", url],
            "floor: optuna load_study + get_trials": [sys.executable, "-c", FLOOR.format(url=url)],
        }
        for command in commands.values():
            _seconds(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(_seconds(command))
    print(f"{'command':40s} {'median s':>9s} {'min':>6s} {'max':>6s}")
    for name, values in times.items():
        print(f"{name:40s} {statistics.median(values):9.2f} {min(values):6.2f} {max(values):6.2f}")


if __name__ == "__main__":
    main()
