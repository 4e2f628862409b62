"""TFLM's arena and the .tflite file size: the model from the encoding against TFLite Micro.

Samples random mobilenetv3 subnets over every width of the space and resolutions 32-160, and
adds the smallest subnet of every width at r=16 and r=32 and the largest at r=160; converts each
(random weights: sizes do not depend on them) with ``optnas.networks.tflite``, measures in
TFLite Micro's interpreter the smallest arena that builds and runs it
(``optnas.networks.tflm.smallest_arena``: the recorded head + tail, or more where TFLM's
working data outgrows a small plan), the head and tail (``arena_use``) and the flatbuffer's
bytes, and compares them with ``optnas.networks.tflm_memory.tflm_memory``: one row per
network, then the MAPE, the largest errors and the under-predictions beyond 1 % (a network
predicted to fit a bound that it does not). ``sram_kb`` / ``flash_kb`` are shown beside for
scale.

``--fit`` measures another sample (seed 1 by default) and prints the least-squares constants
of the file model and the tail's fixed part, which the module holds; the default sample
(seed 0) is then held out.

``--cmsis-nn N`` instead computes, on N random subnets, what the scratch buffers of TFLM's
CMSIS-NN kernels would add to the arena (no conversion: see :func:`cmsis_nn_scratch`).

    python benchmarks/bench_tflm_memory.py [--networks 36] [--seed 0] [--classes 10] [--fit | --cmsis-nn N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from optnas.networks import tflm_memory as model
from optnas.networks.memory import KB, memory
from optnas.networks.standalone import build_network
from optnas.networks.supernet import build_supernet
from optnas.networks.tflite import convert_int8
from optnas.networks.tflm import arena_use, smallest_arena
from optnas.spaces import MobileNetV3Space, Subnet
from optnas.spaces.mobilenetv3 import WIDTH_MULTS

RESOLUTIONS = range(32, 161)
# Below the range, as in the README's quick start: TFLM's working data outgrows the plan there.
LOW_RESOLUTION = 16


def sample(n_networks: int, seed: int) -> list[Subnet]:
    """Random subnets, every width in turn, at random resolutions; then the smallest subnet of
    every width at r=16 and r=32, and the largest at r=160."""
    rng = np.random.default_rng(seed)
    subnets = []
    for index in range(n_networks):
        resolution = int(rng.choice(RESOLUTIONS))
        space = MobileNetV3Space(width_mult=WIDTH_MULTS[index % len(WIDTH_MULTS)], resolutions=[resolution])
        subnets += space.sample(rng, 1)
    for width in WIDTH_MULTS:
        subnets += [MobileNetV3Space(width_mult=width, resolutions=[resolution]).smallest()
                    for resolution in (LOW_RESOLUTION, RESOLUTIONS[0])]
        subnets.append(MobileNetV3Space(width_mult=width, resolutions=[RESOLUTIONS[-1]]).largest())
    return subnets


def measure(subnets: list[Subnet], n_classes: int) -> list[dict]:
    """Convert and measure subnets (random weights)."""
    torch.manual_seed(0)
    supernets = {}
    rows = []
    for index, subnet in enumerate(subnets):
        width, resolution = subnet["w"], subnet["r"]
        if width not in supernets:
            supernets[width] = build_supernet(n_classes, width)
        start = time.perf_counter()
        network = build_network(subnet, n_classes, supernets[width]).eval()
        flatbuffer = convert_int8(network, torch.rand(2, 3, resolution, resolution) * 2 - 1).flatbuffer
        _, head, tail = arena_use(flatbuffer)
        arena = smallest_arena(flatbuffer)
        seconds = time.perf_counter() - start
        rows.append({"subnet": dict(subnet), "width": width, "r": resolution, "arena": arena, "head": head,
                     "tail": tail, "file": len(flatbuffer), "seconds": seconds,
                     **model.tflm_memory(subnet, n_classes), **memory(subnet, n_classes)})
        print(f"measured {index + 1}/{len(subnets)}: w={width} r={resolution} {seconds:.1f} s", flush=True)
    return rows


def fit(rows: list[dict], n_classes: int) -> None:
    """Print the file model's constants (per operator, per constant tensor, fixed) and the tail's fixed part."""
    features, targets, tails = [], [], []
    for row in rows:
        plan = model.graph_plan(row["subnet"], n_classes)
        constants = [constant for operator in plan.operators for constant in operator.constants]
        features.append([len(plan.operators), len(constants), 1])
        targets.append(row["file"] - sum(size + model._QUANT_ENTRY * entries for size, entries in constants))
        tails.append(row["tail"] - (model.arena_tail(plan) - model._TAIL_FIXED))
    solution, *_ = np.linalg.lstsq(np.array(features, dtype=float), np.array(targets, dtype=float), rcond=None)
    solution = np.round(solution)
    residuals = np.array(targets) - np.array(features) @ solution
    print(f"file: {solution[0]:.0f} B per operator, {solution[1]:.0f} B per constant tensor, "
          f"{solution[2]:.0f} B fixed; residuals {residuals.min():.0f}..{residuals.max():.0f} B")
    print(f"tail fixed part: median {statistics.median(tails):.0f} B, range {min(tails)}..{max(tails)} B")


def cmsis_nn_scratch(n_networks: int, seed: int, n_classes: int) -> None:
    """Print what CMSIS-NN's scratch buffers would add to the arena of random subnets (computed, not measured).

    TFLM's CMSIS-NN kernels on a Cortex-M with the DSP extension (M4, M7, M33), built with GCC,
    ask for ``arm_depthwise_conv_wrapper_s8_get_buffer_size`` bytes: C x k x k int16 for a 5x5
    or 7x7 depthwise convolution (none for 3x3 with padding <= 1), and
    ``arm_convolve_wrapper_s8_get_buffer_size``: 2 x 28 int16 for the 3x3 stem on 3 channels
    (none for 1x1 convolutions). Each is a scratch buffer of its operator, laid out by the
    greedy planner with the rest.
    """
    rng = np.random.default_rng(seed)
    space = MobileNetV3Space(resolutions=RESOLUTIONS, search_width=True)
    added, shares = [], []
    for subnet in space.sample(rng, n_networks):
        plan = model.graph_plan(subnet, n_classes)
        operators = []
        for operator in plan.operators:
            weights = operator.constants[0][0] if operator.constants else 0
            # A depthwise kernel's area is its weights per channel; the stem is the 3x3 conv on 3 channels.
            if operator.code == "DEPTHWISE_CONV_2D" and weights > 9 * operator.channels:
                operator = operator._replace(scratch=(2 * weights,))
            elif operator.code == "CONV_2D" and weights == 27 * operator.channels:
                operator = operator._replace(scratch=(2 * 2 * 28,))
            operators.append(operator)
        head = model.greedy_arena(model.arena_buffers(plan))
        extra = model.greedy_arena(model.arena_buffers(model.GraphPlan(plan.shapes, operators))) - head
        added.append(extra)
        shares.append(extra / (head + model.arena_tail(plan)) * 100)
    print(json.dumps({"cmsis_nn_networks": n_networks,
                      "share_with_more_arena": round(float(np.mean(np.array(added) > 0)), 3),
                      "added_kb_median": round(float(np.median(added)) / KB, 1),
                      "added_kb_max": round(max(added) / KB, 1),
                      "added_percent_of_arena_max": round(max(shares), 1)}, indent=2))


def report(rows: list[dict]) -> dict:
    """Print one row per network and the summary; return the summary."""
    print(f"{'w':>5} {'r':>4} {'arena B':>9} {'model':>9} {'err %':>6} {'head B':>8} {'model':>8} {'tail B':>8} "
          f"{'model':>8} {'file B':>9} {'model':>9} {'err %':>6} {'sram_kb':>8} {'flash_kb':>8}")
    arena_errors, file_errors = [], []
    for row in rows:
        arena, file = row["arena_kb"] * KB, row["tflite_kb"] * KB
        arena_errors.append((arena - row["arena"]) / row["arena"] * 100)
        file_errors.append((file - row["file"]) / row["file"] * 100)
        print(f"{row['width']:>5} {row['r']:>4} {row['arena']:>9} {arena:>9.0f} {arena_errors[-1]:>6.2f} "
              f"{row['head']:>8} {row['arena_head_kb'] * KB:>8.0f} {row['tail']:>8} {row['arena_tail_kb'] * KB:>8.0f} "
              f"{row['file']:>9} {file:>9.0f} {file_errors[-1]:>6.2f} {row['sram_kb']:>8.1f} {row['flash_kb']:>8.1f}")
    summary = {
        "networks": len(rows),
        "widths": sorted({row["width"] for row in rows}),
        "arena_mape_percent": round(float(np.mean(np.abs(arena_errors))), 3),
        "arena_max_error_percent": round(float(max(arena_errors, key=abs)), 3),
        "arena_max_error_bytes": int(max((row["arena_kb"] * KB - row["arena"] for row in rows), key=abs)),
        "head_exact": sum(round(row["arena_head_kb"] * KB) == row["head"] for row in rows),
        "file_mape_percent": round(float(np.mean(np.abs(file_errors))), 3),
        "file_max_error_percent": round(float(max(file_errors, key=abs)), 3),
        "file_max_error_bytes": int(max((row["tflite_kb"] * KB - row["file"] for row in rows), key=abs)),
        "under_predicted_beyond_1_percent": {"arena": sum(error < -1 for error in arena_errors),
                                             "file": sum(error < -1 for error in file_errors)},
        "sram_kb_mape_percent": round(float(np.mean([abs(row["sram_kb"] * KB - row["arena"]) / row["arena"] * 100
                                                     for row in rows])), 1),
        "flash_kb_mape_percent": round(float(np.mean([abs(row["flash_kb"] * KB - row["file"]) / row["file"] * 100
                                                      for row in rows])), 1),
        "median_seconds_per_network": round(statistics.median(row["seconds"] for row in rows), 2),
    }
    print(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=36, help="random networks (15 more are the corners)")
    parser.add_argument("--seed", type=int, default=None, help="sample seed [default: 0, or 1 with --fit]")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--fit", action="store_true", help="print the model's constants fitted on this sample")
    parser.add_argument("--cmsis-nn", type=int, default=0, metavar="N",
                        help="only compute what CMSIS-NN's scratch buffers add on N random subnets")
    args = parser.parse_args()
    if args.cmsis_nn:
        cmsis_nn_scratch(args.cmsis_nn, args.seed or 0, args.classes)
        return
    torch.set_num_threads(1)
    rows = measure(sample(args.networks, (1 if args.fit else 0) if args.seed is None else args.seed), args.classes)
    report(rows)
    if args.fit:
        fit(rows, args.classes)


if __name__ == "__main__":
    main()
