"""Run the training, evaluation and search paths on an accelerator and compare them with the CPU.

The test suite runs on the CPU only; this script is what checks `--device cuda`. It trains a
small supernet on digits on both devices, scores the same candidates with the same
(CPU-trained) weights on both, and runs a short search end to end on the accelerator.

    python benchmarks/check_device.py [--device cuda] [--epochs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.data.datasets import DataSplits, load_dataset
from optnas.evaluation.inheritance import evaluate_candidate
from optnas.networks.costs import profile
from optnas.networks.supernet import build_supernet
from optnas.spaces import MobileNetV3Space
from optnas.studies.search import start_search
from optnas.training.recipes import ExitRecipe, FineTuneRecipe
from optnas.training.supernet import train_supernet


def _train(device: str, epochs: int, folder: Path) -> tuple[torch.nn.Module, dict, float]:
    data = load_dataset("digits", seed=0)
    supernet = build_supernet(10, 1.0)
    started = time.perf_counter()
    out_path = folder / f"supernet-{device}-{len(list(folder.iterdir()))}.pth"
    summary = train_supernet(supernet, data, epochs=epochs, out_path=out_path, device=device, seed=0, progress=False)
    return supernet, summary, time.perf_counter() - started


def _check_early_exits(supernet: torch.nn.Module, data: DataSplits, device: str, failures: list[str]) -> None:
    """Batch-1 early-exit forward on the device agrees with the batched evaluation there."""
    from optnas.evaluation.early_exits import evaluate_ee_candidate
    from optnas.networks.early_exits import exit_decisions, exit_outputs
    from optnas.spaces import EEMobileNetV3Space

    space = EEMobileNetV3Space(resolutions=[32])
    subnet = space.canonical({**space.smallest(), "exits": [1, 1, 0, 1], "epsilon": [0.5, 0.5, 0.1, 0.5]})
    stats, model = evaluate_ee_candidate(supernet, subnet, data, FineTuneRecipe(epochs=1, device=device),
                                         ExitRecipe(method="confidence", mmax=5.0))
    predictions, confidence, labels = exit_outputs(model, data.valid, resolution=32, device=device)
    middle = confidence.sort(dim=1).values[:, len(labels) // 2 - 1: len(labels) // 2 + 1]
    epsilon = middle.mean(dim=1).tolist()
    chosen = exit_decisions(confidence, epsilon)
    images, _ = data.valid.tensors(32)
    images = images.to(device)
    disagree = 0
    for index in range(len(labels)):
        logits, exit_index = model.forward_early(images[index: index + 1], epsilon)
        disagree += (exit_index != chosen[index].item()
                     or logits.argmax().item() != predictions[exit_index, index].item())
    print(f"early exits on {device}: top1 {stats['top1']:.2f}, exit_ratios {stats['exit_ratios']}, "
          f"batch-1 vs batched disagreements {disagree}/{len(labels)}")
    if disagree:
        failures.append(f"early exits: {disagree} batch-1 decisions differ from the batched ones")


def _check_flatness(supernet: torch.nn.Module, data: DataSplits, device: str, failures: list[str]) -> None:
    """Robustness on the device: 0 at sigma 0, reproducible, close to the CPU figure."""
    from optnas.evaluation.flatness import robustness

    subnet = MobileNetV3Space.from_range(32, 32, 4).largest()
    figures = {}
    for where in ("cpu", device):
        top1, model = evaluate_candidate(supernet, subnet, data, FineTuneRecipe(epochs=1, device=where, optim="sam"))
        figures[where] = [robustness(model, data.valid, resolution=32, sigmas=[sigma], n_samples=3, seed=0,
                                     device=where) for sigma in (0.0, 0.05, 0.05)]
        print(f"flatness on {where}: SAM-fine-tuned top1 {top1:.2f}, robustness at sigma 0/0.05/0.05 {figures[where]}")
    zero, first, again = figures[device]
    if zero != 0.0 or first != again:
        failures.append(f"robustness on {device}: sigma 0 gave {zero}, repeated draws {first} vs {again}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=4)
    args = parser.parse_args()
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(f"{args.device}: CUDA is not available here")
        return 2
    print(f"torch {torch.__version__}, {args.device}: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cpu_net, cpu_summary, cpu_seconds = _train("cpu", args.epochs, folder)
        _, dev_summary, dev_seconds = _train(args.device, args.epochs, folder)
        print(f"supernet, {args.epochs} epochs: cpu {cpu_seconds:.1f} s {cpu_summary}")
        print(f"supernet, {args.epochs} epochs: {args.device} {dev_seconds:.1f} s {dev_summary}")

        data = load_dataset("digits", seed=0)
        space = MobileNetV3Space.from_range(32, 32, 4)
        rng = np.random.default_rng(0)
        subnets = [space.smallest(), space.largest(), *space.sample(rng, args.candidates - 2)]
        print(f"{'candidate':>9} {'epochs':>6} {'cpu top1':>9} {args.device + ' top1':>10} {'diff':>6}")
        for index, subnet in enumerate(subnets):
            for epochs in (0, 1):
                top1 = {}
                for device in ("cpu", args.device):
                    recipe = FineTuneRecipe(epochs=epochs, device=device)
                    top1[device], _ = evaluate_candidate(cpu_net, subnet, data, recipe)
                diff = abs(top1["cpu"] - top1[args.device])
                print(f"{index:>9} {epochs:>6} {top1['cpu']:9.2f} {top1[args.device]:10.2f} {diff:6.2f}")
                # Inherited weights, BN recalibration and evaluation are the same arithmetic on both
                # devices up to rounding: at most 2 of the 360 images may flip. Fine-tuning is
                # reported only: SGD amplifies rounding differences over an epoch.
                if epochs == 0 and diff > 200 / len(data.valid):
                    failures.append(f"candidate {index}: top1 {top1['cpu']:.2f} on cpu, "
                                    f"{top1[args.device]:.2f} on {args.device}")

        _check_early_exits(cpu_net, data, args.device, failures)
        _check_flatness(cpu_net, data, args.device, failures)

        config = SearchConfig(supernet_epochs=1, n_doe=4, iterations=1, n_iter=2, n_epochs=1, predictor="rbf",
                              sec_predictor="rbf", sec_obj="macs", device=args.device, save=str(folder / "run"))
        started = time.perf_counter()
        study = start_search(config.validate(), f"sqlite:///{folder / 'check.db'}", progress=False)
        trials = study.get_trials(states=(TrialState.COMPLETE,))
        print(f"search on {args.device}: {len(trials)} trials in {time.perf_counter() - started:.1f} s")
        if len(trials) != config.budget:
            failures.append(f"search completed {len(trials)} of {config.budget} trials")
        for trial in trials:
            if abs(trial.user_attrs["macs"] - profile(trial.user_attrs["subnet"], 10)["macs"]) > 1e-9:
                failures.append(f"trial {trial.number}: stored MACs differ from profile()")
    for failure in failures:
        print("FAIL", failure)
    print("OK" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
