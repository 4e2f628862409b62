"""Supernet training on many processes: ``optnas supernet train`` and ``optnas search`` on two
processes on gloo, forked with the environment ``torchrun`` gives its processes (RANK, WORLD_SIZE,
MASTER_ADDR, ...) so that they can be spied on and start in a second, not five; checkpoints resumed
by another number of processes. (``torchrun`` itself: see the README's "Many GPUs" section and
benchmarks/bench_ddp.py, which launch it.)"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from optnas.training import supernet as supernet_training
from optnas.training.distributed import Ranks, fingerprint, shard_indices
from tests.conftest import invoke_cli
from tests.forked import Forked

# One rank of an `optnas` command, spied on: which subnets each supernet step trains, which
# process writes the checkpoint, and the weights when this run's epoch number STOP begins (then
# it stops there, as a kill would).
_RANK = r"""
import json, os, sys
from pathlib import Path
import torch
from optnas.cli import main
from optnas.spaces.mobilenetv3 import MobileNetV3Space
from optnas.training import supernet as training

spy, stop, rank = Path(sys.argv[1]), int(sys.argv[2]), int(os.environ["RANK"])
events = {"subnets": [], "saves": 0, "epochs": 0}
sample, save, epoch = MobileNetV3Space.sample, training._save_checkpoint, training._train_epoch

def sampled(self, rng, n):
    subnets = sample(self, rng, n)
    events["subnets"].append(subnets)
    return subnets

def saved(*args, **kwargs):
    events["saves"] += 1
    return save(*args, **kwargs)

def epochs(supernet, *args, **kwargs):
    events["epochs"] += 1
    if events["epochs"] == stop:
        torch.save(supernet.state_dict(), spy / f"weights-{rank}.pt")
        raise KeyboardInterrupt
    return epoch(supernet, *args, **kwargs)

MobileNetV3Space.sample, training._save_checkpoint, training._train_epoch = sampled, saved, epochs
try:
    main(sys.argv[3:], prog_name="optnas")
finally:
    (spy / f"events-{rank}.json").write_text(json.dumps(events))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train_args(data: Path, out: Path) -> list[str]:
    # Tiny: 64 training images, 2 global steps of 32 per epoch (16 per process), 24 px, the narrowest supernet.
    return ["supernet", "train", "--dataset", "cifar10", "--data", str(data), "--vld-size", "20", "--epochs", "3",
            "--warmup-epochs", "1", "--batch-size", "32", "--lr", "24", "--ur", "24", "--width-mult", "0.35",
            "--out", str(out)]


def _two_processes(spy: Path, stop: int, args: list[str], cwd: Path) -> list[tuple[int | None, str, str]]:
    """Run ``args`` on two ranks as torchrun would start them; stop both as their ``stop``-th epoch begins."""
    spy.mkdir(exist_ok=True)
    port = str(_free_port())
    processes = [
        Forked(["-c", _RANK, str(spy), str(stop), *args], cwd,
               env={"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"})
        for rank in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    return [(process.returncode, out, err) for process, (out, err) in zip(processes, outputs)]


def _history(path: Path) -> list[dict[str, Any]]:
    return torch.load(path, map_location="cpu", weights_only=True)["history"]


def _stop_at_epoch(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Make this process's ``number``-th supernet epoch stop as a kill would."""
    real_epoch = supernet_training._train_epoch
    begun = []

    def stopped(*args: Any, **kwargs: Any) -> float:
        begun.append(1)
        if len(begun) == number:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(supernet_training, "_train_epoch", stopped)


def test_two_processes_train_as_one_and_one_resumes_them(
    tiny_cifar10: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "supernet.pth"
    args = _train_args(tiny_cifar10, out)

    # Epochs 1 (largest alone) and 2 (sandwich) on two processes, stopped as epoch 3 begins.
    results = _two_processes(tmp_path / "spy", 3, args, tmp_path)
    for returncode, _, err in results:
        assert returncode == 1 and "Interrupted" in err, err
    events = [json.loads((tmp_path / "spy" / f"events-{rank}.json").read_text()) for rank in range(2)]
    # Every step drew the same random subnets on both ranks: none in the 2 steps of the largest
    # alone, 2 in each of the sandwich epoch's 2.
    assert [len(step) for step in events[0]["subnets"]] == [0] * 2 + [2] * 2
    assert events[0]["subnets"] == events[1]["subnets"]
    # Only rank 0 wrote the checkpoint, once per epoch; both hold the same weights and BN statistics.
    assert [rank_events["saves"] for rank_events in events] == [2, 0]
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix == ".pth") == ["supernet.pth"]
    weights = [torch.load(tmp_path / "spy" / f"weights-{rank}.pt", weights_only=True) for rank in range(2)]
    saved = torch.load(out, map_location="cpu", weights_only=True)
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]) and torch.equal(value, saved["state_dict"][key]), key
    assert [record["processes"] for record in saved["history"]] == [2, 2]
    assert saved["history"][1]["loss"] < saved["history"][0]["loss"]

    # Epoch 3 in this one process: the 2-process recipe is accepted.
    result = invoke_cli(*args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["epochs"], summary["trained_epochs"], summary["processes"]) == (3, 1, 1)
    final = torch.load(out, map_location="cpu", weights_only=True)
    assert final["recipe"] == saved["recipe"] == summary["recipe"] and final["recipe"]["batch_size"] == 32
    assert [record["processes"] for record in final["history"]] == [2, 2, 1]
    assert 0.0 <= summary["top1_largest"] <= 100.0 and 0.0 <= summary["top1_smallest"] <= 100.0


def test_a_search_on_two_processes_trains_its_supernet_on_both_and_searches_on_one(
    tiny_cifar10: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    args = ["search", "--storage", storage, "--dataset", "cifar10", "--data", str(tiny_cifar10), "--vld-size", "20",
            "--lr", "24", "--ur", "24", "--supernet-epochs", "2", "--n-epochs", "0", "--sec-obj", "macs",
            "--n-doe", "2", "--iterations", "1", "--n-iter", "1", "--width-mult", "0.35", "--quiet",
            "--save", str(tmp_path / "runs")]
    # The supernet's first epoch in this one process, stopped before the second (no study yet).
    _stop_at_epoch(monkeypatch, 2)
    assert invoke_cli(*args).returncode == 1
    monkeypatch.undo()
    (supernet,) = (tmp_path / "runs").glob("supernet-*.pth")
    assert [record["processes"] for record in _history(supernet)] == [1]

    # On two processes both train its second epoch from there, then the first one alone searches.
    results = _two_processes(tmp_path / "spy", 99, args, tmp_path)
    assert [returncode for returncode, _, _ in results] == [0, 0], results[0][2] + results[1][2]
    assert results[0][1].count("Supernet: ") == results[0][1].count("Study '") == 1
    assert results[1][1] == ""
    assert [record["processes"] for record in _history(supernet)] == [1, 2]
    study = optuna.load_study(study_name=None, storage=storage)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tiny_cifar10: Path, tmp_path: Path) -> None:
    args = [*_train_args(tiny_cifar10, tmp_path / "x.pth")]
    args[args.index("--batch-size") + 1] = "15"
    results = _two_processes(tmp_path / "spy", 99, args, tmp_path)
    for returncode, _, err in results:
        assert returncode == 2 and "does not split evenly over 2 processes" in err, err
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize(("n", "batch", "size"), [(64, 16, 1), (64, 16, 2), (70, 16, 2), (71, 16, 4), (9, 8, 4)])
def test_shards_take_equal_parts_of_every_batch(n: int, batch: int, size: int) -> None:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shards = [shard_indices(order, batch, Ranks(rank, size)) for rank in range(size)]
    # Equal lengths (equal step counts: no process waits for another forever), no image twice.
    assert len({len(shard) for shard in shards}) == 1
    taken = torch.cat(shards)
    assert len(set(taken.tolist())) == len(taken)
    share, last = batch // size, (n % batch) // size
    for step in range(-(-n // batch)):
        width = share if (step + 1) * batch <= n else last
        expected = order[step * batch: step * batch + width * size]
        got = torch.cat([shard[step * share: step * share + width] for shard in shards])
        assert torch.equal(got, expected), step
    if size == 1:
        assert torch.equal(shards[0], order)
    with pytest.raises(ValueError, match="multiple of 3"):
        shard_indices(order, 16, Ranks(0, 3))


def test_fingerprint_tells_different_subnets_apart() -> None:
    from optnas.spaces.mobilenetv3 import MobileNetV3Space

    space = MobileNetV3Space()
    assert fingerprint([space.largest(), space.smallest()]) == fingerprint([space.largest(), space.smallest()])
    assert fingerprint([space.largest(), space.smallest()]) != fingerprint([space.smallest(), space.largest()])
