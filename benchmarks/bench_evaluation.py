"""Time the parts of a candidate evaluation on digits and compare them with plain PyTorch.

Prints subnet extraction, BN recalibration and evaluation times, evaluation against a bare
``inference_mode`` forward over the same cached tensors, fine-tuning throughput against a
plain PyTorch training loop, and supernet training time per epoch.

Usage: ``python benchmarks/bench_evaluation.py [--device cuda] [--threads 1] [--repeats 5]``.
On a busy CPU machine ``--threads 1`` is much faster: at these tiny tensor sizes intra-op
threads mostly wait for each other.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optnas.data.datasets import ImageSet, load_dataset
from optnas.networks.inference import evaluate, recalibrate_bn
from optnas.networks.supernet import build_supernet, extract_subnet
from optnas.spaces import MobileNetV3Space
from optnas.training.loop import fine_tune
from optnas.training.recipes import FineTuneRecipe
from optnas.training.supernet import train_supernet

RESOLUTION = 32
BATCH_SIZE = 64


def _timed(function: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _median(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    return statistics.median(_timed(function, device) for _ in range(repeats))


def _bare_forward(
    model: nn.Module, images: ImageSet, batch_size: int, device: torch.device
) -> None:
    inputs, _ = images.tensors(RESOLUTION, device=device)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            model(inputs[start : start + batch_size])


def _plain_epoch(model: nn.Module, train: ImageSet, device: torch.device, seed: int) -> None:
    """The loop of a PyTorch tutorial: the floor fine_tune is compared with."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-5)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for images, labels in train.batches(
        BATCH_SIZE, RESOLUTION, shuffle=True, augment=True, generator=generator, device=device
    ):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--supernet-epochs", type=int, default=1)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"device {device}, {torch.get_num_threads()} CPU threads, r={RESOLUTION}, "
        f"torch {torch.__version__}"
    )

    data = load_dataset("digits")
    supernet = build_supernet(data.n_classes).to(device)
    space = MobileNetV3Space(resolutions=(RESOLUTION,))
    subnets = space.sample(np.random.default_rng(0), 10)

    extract = statistics.median(
        _timed(lambda subnet=subnet: extract_subnet(supernet, subnet), device) for subnet in subnets
    )
    print(f"subnet extraction      {1000 * extract:8.1f} ms (median of {len(subnets)} subnets)")

    model = extract_subnet(supernet, subnets[0])
    # Warm-up: caches the validation tensors and lets backends pick their kernels.
    evaluate(model, data.valid, resolution=RESOLUTION, device=device)
    recalibrate = _median(
        lambda: recalibrate_bn(model, data.train, resolution=RESOLUTION, device=device),
        device, args.repeats,
    )
    n_images = min(2000, len(data.train))
    print(f"BN recalibration       {1000 * recalibrate:8.1f} ms ({n_images} images)")

    batch_size = 500
    evaluation, bare = [], []
    # Interleaved, so that a change in machine load hits both alike.
    for _ in range(args.repeats):
        evaluation.append(_timed(
            lambda: evaluate(
                model, data.valid, resolution=RESOLUTION, batch_size=batch_size, device=device
            ),
            device,
        ))
        bare.append(_timed(lambda: _bare_forward(model, data.valid, batch_size, device), device))
    evaluation_s, bare_s = statistics.median(evaluation), statistics.median(bare)
    print(
        f"evaluation             {1000 * evaluation_s:8.1f} ms ({len(data.valid)} images); "
        f"bare inference_mode forward {1000 * bare_s:.1f} ms; ratio {evaluation_s / bare_s:.2f}"
    )

    tuned, plain = [], []
    for repeat in range(args.repeats):
        network = copy.deepcopy(model)
        tuned.append(_timed(
            lambda network=network, repeat=repeat: fine_tune(
                network, data.train, FineTuneRecipe(epochs=1, device=device, seed=repeat, batch_size=BATCH_SIZE),
                resolution=RESOLUTION,
            ),
            device,
        ))
        network = copy.deepcopy(model)
        plain.append(_timed(lambda network=network, repeat=repeat: _plain_epoch(network, data.train, device, repeat),
                            device))
    tuned_rate = len(data.train) / statistics.median(tuned)
    plain_rate = len(data.train) / statistics.median(plain)
    print(
        f"fine-tune throughput   {tuned_rate:8.1f} images/s; plain PyTorch loop {plain_rate:.1f} "
        f"images/s; ratio {tuned_rate / plain_rate:.2f}"
    )

    with tempfile.TemporaryDirectory() as folder:
        summary = train_supernet(
            build_supernet(data.n_classes), data, epochs=args.supernet_epochs,
            out_path=Path(folder) / "supernet.pth", device=device, resolutions=(RESOLUTION,),
            progress=False,
        )
    print(
        f"supernet training      {summary['seconds_per_epoch']:8.1f} s/epoch "
        f"({len(data.train)} images, largest + smallest + 2 random subnets per step)"
    )


if __name__ == "__main__":
    main()
