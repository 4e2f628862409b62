"""Time the analytic cost model against torchprofile on the network that ofa builds.

For each random architecture, ``optnas.networks.costs.profile`` is timed cold (memoised layer costs
cleared) and warm, and ``torchprofile.profile_macs`` is timed on the extracted subnet, without
and with the time to extract it from the supernet. The figures must agree: MACs within 1 %
(the model reproduces torchprofile's count exactly) and parameters exactly.

Run as ``python benchmarks/bench_profile.py [--n 20] [--seed 0] [--n-classes 1000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from torchprofile import profile_macs

from optnas.networks import costs
from optnas.spaces import MobileNetV3Space

WARM_REPEATS = 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="number of architectures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture draw")
    parser.add_argument("--n-classes", type=int, default=1000, help="classifier outputs")
    args = parser.parse_args()

    space = MobileNetV3Space.from_range(128, 224, 4, search_width=(1.0, 1.2))
    subnets = space.sample(np.random.default_rng(args.seed), args.n)
    supernets = {}
    for width in sorted({subnet["w"] for subnet in subnets}):
        start = time.perf_counter()
        supernets[width] = OFAMobileNetV3(
            n_classes=args.n_classes,
            dropout_rate=0,
            width_mult=width,
            ks_list=[3, 5, 7],
            expand_ratio_list=[3, 4, 6],
            depth_list=[2, 3, 4],
        )
        print(f"supernet w{width} built once in {time.perf_counter() - start:.3f} s")

    header = (
        f"{'w':>4} {'r':>4} {'MMACs':>9} {'Mparams':>8} {'cold us':>8} {'warm us':>8} "
        f"{'build ms':>9} {'tprof ms':>9} {'MACs err':>9}"
    )
    print(header)
    rows = []
    failures = 0
    for subnet in subnets:
        costs.clear_cache()
        start = time.perf_counter()
        cost = costs.profile(subnet, n_classes=args.n_classes)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(WARM_REPEATS):
            costs.profile(subnet, n_classes=args.n_classes)
        warm = (time.perf_counter() - start) / WARM_REPEATS

        start = time.perf_counter()
        supernet = supernets[subnet["w"]]
        supernet.set_active_subnet(ks=subnet["ks"], e=subnet["e"], d=subnet["d"])
        network = supernet.get_active_subnet(preserve_weight=True).eval()
        build = time.perf_counter() - start
        image = torch.randn(1, 3, subnet["r"], subnet["r"])
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs = profile_macs(network, image) / 1e6
        traced = time.perf_counter() - start
        params = sum(p.numel() for p in network.parameters()) / 1e6

        error = abs(cost["macs"] - macs) / macs
        if error > 0.01 or round(cost["params"] * 1e6) != round(params * 1e6):
            failures += 1
        rows.append((cold, warm, build, traced))
        print(
            f"{subnet['w']:>4} {subnet['r']:>4} {macs:>9.2f} {params:>8.3f} {cold * 1e6:>8.1f} "
            f"{warm * 1e6:>8.1f} {build * 1e3:>9.1f} {traced * 1e3:>9.1f} {error:>9.1e}"
        )

    cold, warm, build, traced = (statistics.median(column) for column in zip(*rows))
    print(
        f"\nmedian per architecture: profile cold {cold * 1e6:.1f} us, warm {warm * 1e6:.1f} us;"
        f" torchprofile {traced * 1e3:.1f} ms, with extraction {(build + traced) * 1e3:.1f} ms"
    )
    print(
        f"speed-up: torchprofile / warm profile {traced / warm:,.0f}x, "
        f"(extraction + torchprofile) / cold profile {(build + traced) / cold:,.0f}x"
    )
    print(
        f"figures identical (MACs within 1 %, params exact): "
        f"{len(subnets) - failures}/{len(subnets)}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
