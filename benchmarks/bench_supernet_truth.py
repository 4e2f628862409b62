"""Does the supernet tell the truth about subnets? Inherited-weight scores against stand-alone training.

Takes ``--n-subnets`` architectures spread over the cost (MACs): the completed trials of a
study written by ``optnas search`` (their inherited-weight validation ``top1`` as the search
stored it), or, with ``--supernet``, architectures drawn from the search space and scored with
inherited weights the way the search scores them (``CandidateEvaluator.train``: extraction,
``--search-epochs`` of fine-tuning, BN recalibration, validation top1). Each one is then
trained stand-alone from scratch (freshly initialised weights, ``fine_tune`` for ``--epochs``
at ``--learning-rate``, seeded, BN recalibrated) on the search's own training split and scored
on the validation and test images together (validation-only and test-only are reported too).

Prints one row per subnet (trial, MACs, inherited top1, stand-alone top1, seconds) and a
summary: Kendall tau between the two scores with a bootstrap 95 % interval (subnets resampled
with replacement), the mean gap (stand-alone minus inherited, points), the spread of the
stand-alone accuracies (max - min) against the binomial noise of one accuracy on that many
images, sqrt(p(1-p)/n), and the goal of issue #17: |mean gap| <= 5 points, and tau >= 0.6 unless
the spread is within noise (spread <= 2*sqrt(2)*SE, the 95 % band of the difference of two
independent accuracies). The goal of issue #27, where the networks differ, asks more: a
stand-alone spread over twice that threshold, a stand-alone ranking that reproduces between the
validation and the test images (tau >= 0.6), tau >= 0.6 with the interval's lower bound above 0,
and |mean gap| <= 5 points. Everything goes to ``--work/truth.json`` (a tau that does not exist,
one side being constant, is null there).

    python benchmarks/bench_supernet_truth.py --storage sqlite:///nas.db --study-name NAME [--work DIR]
        [--n-subnets 10] [--epochs 8] [--learning-rate 0.1] [--recipe supernet|plain] [--bootstrap 2000]
        [--threads 1] [--device cpu]
    python benchmarks/bench_supernet_truth.py --supernet supernet.pth [--dataset digits] [--vld-size 360]
        [--search-epochs 0] [--option lr=32 --option ur=32 ...] [--n-subnets 10] [--standalone-seed 1] [--work DIR]
    python benchmarks/bench_supernet_truth.py --supernet fmnist.pth --dataset fashion-mnist --data DIR
        --vld-size 2000 --option width_mult=0.5 --option lr=12 --option ur=28 --option rstep=4
        # a supernet of `optnas supernet train` on Fashion-MNIST (benchmarks/subset_idx.py: part of it)
    python benchmarks/bench_supernet_truth.py ... --quick    # 3 subnets, 1 epoch on 64 images: a smoke run
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch.nn.functional as F
from scipy.stats import kendalltau

from optnas import trial_attrs
from optnas.config import SearchConfig
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.networks.costs import profile
from optnas.networks.inference import evaluate, recalibrate_bn
from optnas.networks.standalone import build_network
from optnas.networks.supernet import build_supernet, zero_init_residuals
from optnas.studies.study import CONFIG_ATTR
from optnas.training.loop import fine_tune, set_threads
from optnas.training.recipes import FineTuneRecipe

GOAL_GAP = 5.0
GOAL_TAU = 0.6
# Issue #27 (networks that differ): the stand-alone spread over this many noise thresholds.
GOAL_SPREAD_OVER_NOISE = 2.0
# The largest network's label smoothing in optnas.training.supernet.train_supernet.
LABEL_SMOOTHING = 0.1
# Option: (default, --quick default).
DEFAULTS = {"n_subnets": (10, 3), "epochs": (8, 1), "train_images": (None, 64), "bootstrap": (2000, 200)}
# Draws per requested subnet when --supernet samples the space (costs are analytic: cheap).
POOL_PER_SUBNET = 20


def spread_by_cost(candidates: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Return ``n`` candidates at evenly spaced ranks of cost, cheapest and costliest included.

    Args:
        candidates: dicts with ``macs`` and ``order`` (the tie-break: trial number or draw),
            one per distinct architecture.
        n: how many to keep (all of them when there are no more).
    """
    ranked = sorted(candidates, key=lambda c: (c["macs"], c["order"]))
    if n >= len(ranked):
        return ranked
    if n == 1:
        return [ranked[len(ranked) // 2]]
    # Spacing (len - 1) / (n - 1) >= 1, so the rounded ranks are distinct.
    return [ranked[int(i * (len(ranked) - 1) / (n - 1) + 0.5)] for i in range(n)]


def study_candidates(
    storage: str, study_name: str, overrides: dict[str, Any]
) -> tuple[SearchConfig, list[dict[str, Any]]]:
    """Return a study's configuration and one candidate per distinct architecture of its completed trials.

    A candidate holds ``trial``, ``order``, ``subnet`` (canonical), ``macs`` and ``inherited``
    (the trial's stored validation top1; ``top1_float`` for an ``--int8`` search, since the
    stand-alone networks are scored in float). Duplicate trials are skipped (the first one counts).

    Args:
        storage: the storage URL.
        study_name: a study written by ``optnas search``.
        overrides: options replacing the stored ones (e.g. ``device``, ``data``).
    """
    study = optuna.load_study(study_name=study_name, storage=storage)
    if CONFIG_ATTR not in study.user_attrs:
        raise SystemExit(f"study '{study_name}' was not created by optnas search (no stored configuration)")
    config = SearchConfig.from_dict({**study.user_attrs[CONFIG_ATTR], **overrides})
    space = config.make_space()
    if not space.trains_networks or space.has_exits:
        raise SystemExit(f"this benchmark needs single-exit mobilenetv3 networks; study '{study_name}' is "
                         f"{config.search_space}")
    candidates, seen = [], set()
    for trial in sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)),
                        key=lambda t: t.number):
        attrs = trial.user_attrs
        if trial_attrs.SUBNET not in attrs or "top1" not in attrs:
            continue
        subnet = space.canonical(attrs[trial_attrs.SUBNET])
        key = space.key(subnet)
        if key in seen:
            continue
        seen.add(key)
        macs = attrs["macs"] if "macs" in attrs else profile(subnet, config.class_count())["macs"]
        candidates.append({"trial": trial.number, "order": trial.number, "subnet": subnet, "macs": float(macs),
                           "inherited": float(attrs.get("top1_float", attrs["top1"]))})
    if not candidates:
        raise SystemExit(f"study '{study_name}' has no completed trial with a subnet and a top1")
    return config, candidates


def sampled_candidates(config: SearchConfig, n: int) -> list[dict[str, Any]]:
    """Return distinct architectures drawn uniformly from the configuration's space (seeded by its seed).

    Candidates hold ``trial`` (None), ``order`` (the draw), ``subnet`` and ``macs``; the
    inherited score is added by :func:`score_inherited` for the chosen ones only.

    Args:
        config: the search configuration (space, classes, seed).
        n: subnets wanted; ``POOL_PER_SUBNET`` times as many are drawn.
    """
    space = config.make_space()
    candidates, seen = [], set()
    # Uniform draws only: the space's smallest and largest networks are trained at every step of
    # the sandwich rule, so they would flatter the supernet.
    draws = space.sample(np.random.default_rng(config.seed), POOL_PER_SUBNET * n)
    for order, subnet in enumerate(draws):
        subnet = space.canonical(subnet)
        key = space.key(subnet)
        if key not in seen:
            seen.add(key)
            candidates.append({"trial": None, "order": order, "subnet": subnet,
                               "macs": float(profile(subnet, config.class_count())["macs"])})
    return candidates


def score_inherited(evaluator: CandidateEvaluator, candidate: dict[str, Any]) -> None:
    """Add ``inherited``: the validation top1 the search would store for this architecture.

    Args:
        evaluator: the search's evaluator (its supernet, split, fine-tuning epochs and seed).
        candidate: a candidate of :func:`sampled_candidates`, updated in place.
    """
    top1, _ = evaluator.train(candidate["subnet"])
    candidate["inherited"] = float(top1)


def train_standalone(
    subnet: dict[str, Any], data: Any, *, n_classes: int, epochs: int, lr: float, batch_size: int, seed: int,
    device: str, train_images: int | None = None, recipe: str = "supernet",
) -> dict[str, Any]:
    """Train one architecture from scratch and score it on the validation and test images.

    The network is built from a freshly initialised supernet (``build_supernet(seed=seed)``),
    trained with :func:`optnas.training.loop.fine_tune` on the training split, its BN statistics
    recomputed, then evaluated; the combined score counts the images of both splits.
    ``recipe`` ``supernet`` trains it as ``optnas supernet train`` trains the largest network
    (residual branches zero-initialised, label smoothing 0.1); ``plain`` with OFA's
    initialisation and plain cross-entropy, which in 5 epochs leaves large networks unconverged
    and scattered (78-86 % for three near-identical 15 M-MAC networks).

    Args:
        subnet: a canonical mobilenetv3 subnet.
        data: the search's splits.
        n_classes: outputs of the classifier.
        epochs: training epochs.
        lr: initial learning rate (cosine per epoch).
        batch_size: images per step.
        seed: seeds the initialisation, shuffling, augmentation, dropout and BN images.
        device: torch device.
        train_images: train on the first images of the split only (None: all).
        recipe: ``supernet`` or ``plain`` (see above).

    Returns:
        ``top1`` (validation and test together), ``top1_valid``, ``top1_test``, ``correct``,
        ``images`` and ``seconds``.
    """
    start = time.perf_counter()
    train = data.train if train_images is None else data.train.subset(range(min(train_images, len(data.train))))
    supernet = build_supernet(n_classes, subnet["w"], seed=seed)
    loss = None
    if recipe == "supernet":
        zero_init_residuals(supernet)
        loss = functools.partial(F.cross_entropy, label_smoothing=LABEL_SMOOTHING)
    network = build_network(subnet, n_classes, supernet)
    resolution = int(subnet["r"])
    fine_tune(network, train, FineTuneRecipe(epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed),
              resolution=resolution, loss=loss)
    recalibrate_bn(network, train, resolution=resolution, device=device, seed=seed)
    scores, correct, images = {}, 0, 0
    for name, split in (("valid", data.valid), ("test", data.test)):
        scores[name] = evaluate(network, split, resolution=resolution, device=device)
        correct += round(scores[name] * len(split) / 100.0)
        images += len(split)
    return {"top1": 100.0 * correct / images, "top1_valid": scores["valid"], "top1_test": scores["test"],
            "correct": correct, "images": images, "seconds": time.perf_counter() - start}


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two paired samples (NaN when either is constant)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(x, y)[0])


def bootstrap_tau(x: Sequence[float], y: Sequence[float], n_boot: int, seed: int) -> dict[str, Any]:
    """Percentile bootstrap 95 % interval of Kendall's tau, pairs resampled with replacement.

    Resamples where either side is constant have no tau and are left out (``used`` counts the rest).

    Args:
        x: the first scores.
        y: the paired second scores.
        n_boot: resamples.
        seed: seeds the resampling.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n_boot):
        index = rng.integers(0, len(x), len(x))
        tau = kendall_tau(x[index], y[index])
        if not math.isnan(tau):
            taus.append(tau)
    if not taus:
        return {"low": math.nan, "high": math.nan, "used": 0}
    low, high = np.percentile(taus, [2.5, 97.5])
    return {"low": float(low), "high": float(high), "used": len(taus)}


def summarise(rows: list[dict[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    """The summary of the per-subnet rows: tau with its interval, gaps, spread, noise, goal.

    Args:
        rows: one dict per subnet with ``inherited``, ``standalone``, ``standalone_valid``,
            ``standalone_test`` and ``images``.
        n_boot: bootstrap resamples.
        seed: seeds the bootstrap.
    """
    inherited = [row["inherited"] for row in rows]
    standalone = [row["standalone"] for row in rows]
    gaps = [s - i for s, i in zip(standalone, inherited)]
    tau = kendall_tau(inherited, standalone)
    ci = bootstrap_tau(inherited, standalone, n_boot, seed)
    # How reproducible the stand-alone ranking itself is: the same networks ranked on two
    # disjoint image sets. No inherited score can be expected to rank them better than this.
    split_tau = kendall_tau([row["standalone_valid"] for row in rows], [row["standalone_test"] for row in rows])
    spread = max(standalone) - min(standalone)
    p = float(np.mean(standalone)) / 100.0
    images = rows[0]["images"]
    se = 100.0 * math.sqrt(p * (1.0 - p) / images)
    threshold = 2.0 * math.sqrt(2.0) * se
    within_noise = spread <= threshold
    mean_gap = float(np.mean(gaps))
    gap_met = abs(mean_gap) <= GOAL_GAP
    tau_met = not math.isnan(tau) and tau >= GOAL_TAU
    return {
        "subnets": len(rows),
        "kendall_tau": tau,
        "kendall_tau_ci95": ci,
        "kendall_tau_valid": kendall_tau(inherited, [row["standalone_valid"] for row in rows]),
        "standalone_split_tau": split_tau,
        "mean_gap": mean_gap,
        "mean_abs_gap": float(np.mean(np.abs(gaps))),
        "mean_gap_valid": float(np.mean([row["standalone_valid"] - row["inherited"] for row in rows])),
        "standalone_spread": spread,
        "standalone_mean": 100.0 * p,
        "images": images,
        "noise_se": se,
        "noise_threshold": threshold,
        "within_noise": within_noise,
        "goal": {"gap_at_most": GOAL_GAP, "tau_at_least": GOAL_TAU, "gap_met": gap_met, "tau_met": tau_met,
                 "met": gap_met and (tau_met or within_noise)},
        # Every network at 0 or 100 % has no noise and no spread.
        "goal_differ": differ_goal(spread / threshold if threshold > 0 else 0.0, split_tau, tau_met, ci["low"],
                                   gap_met),
    }


def differ_goal(spread_ratio: float, split_tau: float, tau_met: bool, tau_low: float, gap_met: bool) -> dict[str, Any]:
    """Issue #27's goal, for networks that differ: each part and whether all hold.

    Args:
        spread_ratio: the stand-alone spread over the noise threshold (2*sqrt(2)*SE).
        split_tau: tau of the stand-alone accuracies on validation against test images.
        tau_met: inherited-vs-stand-alone tau >= ``GOAL_TAU``.
        tau_low: the lower bound of that tau's bootstrap interval.
        gap_met: |mean gap| <= ``GOAL_GAP``.
    """
    parts = {"spread_met": spread_ratio > GOAL_SPREAD_OVER_NOISE,
             "split_tau_met": not math.isnan(split_tau) and split_tau >= GOAL_TAU,
             "tau_met": tau_met, "tau_low_met": not math.isnan(tau_low) and tau_low > 0, "gap_met": gap_met}
    return {"spread_over_noise": spread_ratio, "spread_over_noise_at_least": GOAL_SPREAD_OVER_NOISE, **parts,
            "met": all(parts.values())}


def goal_line(summary: dict[str, Any]) -> str:
    """One sentence stating the goal check."""
    goal = summary["goal"]
    ci = summary["kendall_tau_ci95"]
    tau = (f"tau {summary['kendall_tau']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] "
           f"{'>=' if goal['tau_met'] else 'below'} {goal['tau_at_least']}")
    noise = (f"spread {summary['standalone_spread']:.2f} points "
             f"{'within' if summary['within_noise'] else 'beyond'} noise "
             f"(2*sqrt(2)*SE = {summary['noise_threshold']:.2f} on {summary['images']} images)")
    gap = (f"|mean gap| {abs(summary['mean_gap']):.2f} {'<=' if goal['gap_met'] else '>'} "
           f"{goal['gap_at_most']:g} points")
    verdict = "MET" if goal["met"] else "NOT MET"
    spared = summary["within_noise"] and not goal["tau_met"]
    reason = " (tau not required: the spread is within noise)" if spared else ""
    ceiling = f"; stand-alone ranking on validation vs test images: tau {summary['standalone_split_tau']:.3f}"
    return f"goal {verdict}: {gap}; {tau}; {noise}{reason}{ceiling}"


def differ_line(summary: dict[str, Any]) -> str:
    """One sentence stating issue #27's goal check (networks that differ)."""
    goal = summary["goal_differ"]

    def mark(met: bool) -> str:
        return "ok" if met else "NO"

    ci = summary["kendall_tau_ci95"]
    return (f"issue #27 goal {'MET' if goal['met'] else 'NOT MET'}: "
            f"spread {goal['spread_over_noise']:.2f}x the noise threshold "
            f"(> {goal['spread_over_noise_at_least']:g}: {mark(goal['spread_met'])}); "
            f"stand-alone validation vs test tau {summary['standalone_split_tau']:.3f} "
            f"(>= {GOAL_TAU}: {mark(goal['split_tau_met'])}); "
            f"tau {summary['kendall_tau']:.3f} (>= {GOAL_TAU}: {mark(goal['tau_met'])}), interval low "
            f"{ci['low']:.3f} (> 0: {mark(goal['tau_low_met'])}); "
            f"|mean gap| {abs(summary['mean_gap']):.2f} (<= {GOAL_GAP:g}: {mark(goal['gap_met'])})")


def progress(line: str) -> None:
    """Print a progress line to stderr at once: a long run shows its figures as they come."""
    print(line, file=sys.stderr, flush=True)


def without_nan(value: Any) -> Any:
    """Return ``value`` with every NaN float (in dicts and lists) replaced by None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nan(item) for item in value]
    return value


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` search options (JSON values, else strings) for the ``--supernet`` form."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option {pair}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_argument_group("subnets: a study (main form) or a supernet")
    source.add_argument("--storage", help="storage URL of the study")
    source.add_argument("--study-name", help="a study written by optnas search")
    source.add_argument("--supernet", type=Path, help="sample subnets and score them with this supernet's weights")
    source.add_argument("--dataset", default="digits", help="--supernet: the dataset")
    source.add_argument("--vld-size", type=int, default=None, help="--supernet: validation images [dataset's default]")
    source.add_argument("--search-epochs", type=int, default=0,
                        help="--supernet: fine-tuning epochs of the inherited scores (the search's --n-epochs)")
    source.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="--supernet: another search option, e.g. lr=32, ur=64, width_mult=1.2 (repeatable)")
    source.add_argument("--data", default=None, help="dataset folder (overrides the study's)")
    parser.add_argument("--work", type=Path, default=Path("bench-supernet-truth"))
    parser.add_argument("--n-subnets", type=int, default=None, help="subnets spread over MACs [10; --quick 3]")
    parser.add_argument("--epochs", type=int, default=None, help="stand-alone training epochs [8; --quick 1]")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="stand-alone initial learning rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--recipe", choices=("supernet", "plain"), default="supernet",
                        help="stand-alone training: supernet = zero-initialised residual branches and label "
                             "smoothing 0.1, as the supernet's largest network; plain = OFA's initialisation, "
                             "plain cross-entropy [supernet]")
    parser.add_argument("--train-images", type=int, default=None,
                        help="train on the first N training images only [all; --quick 64]")
    parser.add_argument("--seed", type=int, default=None,
                        help="stand-alone seed (and, with --supernet, split and sampling seed) [the study's; 0]")
    parser.add_argument("--standalone-seed", type=int, default=None,
                        help="stand-alone seed only, the split and subnets kept (a second training run measures "
                             "how much training alone moves the stand-alone ranking) [--seed]")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples of tau [2000; --quick 200]")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [half the CPUs]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 subnets, 1 epoch on 64 training images, 200 resamples (unless given)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    for name, (default, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    if (args.supernet is None) == (args.storage is None or args.study_name is None):
        raise SystemExit("give either --storage and --study-name, or --supernet")
    if args.n_subnets < 2:
        raise SystemExit("--n-subnets must be at least 2 (tau needs pairs)")
    set_threads(args.threads)
    overrides = {"device": args.device, **({"data": args.data} if args.data else {})}
    if args.supernet is None:
        config, candidates = study_candidates(args.storage, args.study_name, overrides)
        chosen = spread_by_cost(candidates, args.n_subnets)
        evaluator = CandidateEvaluator(config, config.save, progress=False)
        source = {"storage": args.storage, "study_name": args.study_name, "trials": len(candidates)}
    else:
        config = SearchConfig.from_dict({
            **parse_options(args.option), **overrides, "dataset": args.dataset, "vld_size": args.vld_size,
            "seed": 0 if args.seed is None else args.seed, "supernet_path": str(args.supernet),
            "n_epochs": args.search_epochs, "threads": args.threads}).validate()
        evaluator = CandidateEvaluator(config, args.work, progress=False)
        candidates = sampled_candidates(config, args.n_subnets)
        chosen = spread_by_cost(candidates, args.n_subnets)
        for candidate in chosen:
            score_inherited(evaluator, candidate)
            progress(f"inherited {candidate['macs']:.3f} M MACs, r {candidate['subnet']['r']}: "
                     f"{candidate['inherited']:.2f}")
        source = {"supernet": str(args.supernet), "search_epochs": args.search_epochs, "drawn": len(candidates)}
    seed = args.standalone_seed if args.standalone_seed is not None else config.seed if args.seed is None else args.seed
    data = evaluator.data
    settings = {"dataset": config.dataset, "vld_size": len(data.valid), "test_size": len(data.test),
                "split_seed": config.seed, "epochs": args.epochs, "learning_rate": args.learning_rate,
                "batch_size": args.batch_size, "train_images": args.train_images or len(data.train),
                "seed": seed, "bootstrap": args.bootstrap, "device": args.device, "threads": args.threads,
                "recipe": args.recipe}

    rows = []
    for candidate in chosen:
        result = train_standalone(
            candidate["subnet"], data, n_classes=evaluator.n_classes, epochs=args.epochs, lr=args.learning_rate,
            batch_size=args.batch_size, seed=seed, device=args.device, train_images=args.train_images,
            recipe=args.recipe)
        rows.append({"trial": candidate["trial"], "macs": candidate["macs"], "inherited": candidate["inherited"],
                     "standalone": result["top1"], "standalone_valid": result["top1_valid"],
                     "standalone_test": result["top1_test"], "correct": result["correct"],
                     "images": result["images"], "seconds": result["seconds"], "subnet": candidate["subnet"]})
        progress(f"stand-alone {len(rows)}/{len(chosen)}: {candidate['macs']:.3f} M MACs, inherited "
                 f"{candidate['inherited']:.2f}, stand-alone {result['top1']:.2f} (valid {result['top1_valid']:.2f}, "
                 f"test {result['top1_test']:.2f}), {result['seconds']:.0f} s")
    summary = summarise(rows, args.bootstrap, seed)

    print(f"{'trial':>5} {'MACs (M)':>9} {'inherited':>9} {'stand-alone':>11} {'valid':>7} {'test':>7} {'seconds':>8}")
    for row in rows:
        trial = "-" if row["trial"] is None else str(row["trial"])
        print(f"{trial:>5} {row['macs']:>9.3f} {row['inherited']:>9.2f} {row['standalone']:>11.2f} "
              f"{row['standalone_valid']:>7.2f} {row['standalone_test']:>7.2f} {row['seconds']:>8.1f}")
    print(json.dumps(summary, indent=2))
    print(goal_line(summary))
    print(differ_line(summary))
    # Strict JSON: a tau that does not exist (a constant side) is null, not NaN.
    report = without_nan({"source": source, "settings": settings, "rows": rows, "summary": summary})
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "truth.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
