"""Run every speed measurement of a search's stages and print one table.

Each row sets our time against a floor or a baseline measured in the same run, interleaved
where it matters, so that the ratios hold on a busy machine even when absolute times do not:

1. candidate evaluation (BN recalibration + validation) against a bare ``inference_mode``
   forward of the same network over the same tensors, on digits and a CIFAR-sized set;
2. fine-tuning and supernet training throughput against plain PyTorch loops;
3. sampler overhead per trial at 100 / 1,000 / 5,000 completed trials, SQLite and
   PostgreSQL, against Optuna's ``NSGAIISampler`` on the same study;
4. the surrogate step: predictor fit on 100 / 500 / 2,000 architectures and scoring 100,000
   offspring (prediction + exact costs, vectorised as the sampler computes them, beside the
   per-vector loop), against one candidate evaluation on digits (goal: at most half of it);
5. profiling from the encoding against torchprofile on the built network;
6. with ``--e2e``, the README's search command, with its supernet time and peak memory.

Usage: ``python benchmarks/run_all.py [--quick] [--e2e] [--device cpu] [--postgres URL]``.
``--quick`` is a smoke run of a few seconds on tiny sizes (its figures mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from torch import nn

from optnas.config import CostOptions, SearchConfig
from optnas.data.datasets import DataSplits, ImageSet, TensorImageSet, load_dataset
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.evaluation.costs import exact_costs, exact_costs_vectors
from optnas.networks import costs
from optnas.networks.inference import evaluate, recalibrate_bn
from optnas.networks.supernet import build_supernet, extract_subnet
from optnas.objectives.nas import NASObjective, suggest
from optnas.optuna_private import rdb_tables, study_id
from optnas.predictors import PREDICTOR_NAMES, get_predictor
from optnas.samplers.msunas import MSuNASStep
from optnas.samplers.strategies import NASStrategy
from optnas.samplers.surrogate import BATCH_ATTR_PREFIX, SurrogateSampler
from optnas.spaces import MobileNetV3Space
from optnas.studies.storage import open_storage
from optnas.training.loop import fine_tune
from optnas.training.recipes import FineTuneRecipe
from optnas.training.supernet import train_supernet

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
README_COMMAND = (
    "search --storage sqlite:///quickstart.db --supernet-epochs 7 --lr 16 --ur 32 --rstep 8 --n-doe 10 "
    "--iterations 2 --n-iter 4 --n-epochs 0 --sec-obj macs"
)
RESOLUTION = 32
N_ITER = 10
NSGA2_POPULATION = 50
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass
class Row:
    """One line of the table: our figure against its floor or baseline."""

    item: str
    what: str
    ours: str
    reference: str
    ratio: float | None
    goal: str
    met: bool | None


def _seconds(function: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _interleaved(
    ours: Callable[[], object], floor: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, float]:
    """Median seconds of both, run in turns so that a change of machine load hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(_seconds(ours, device))
        times[1].append(_seconds(floor, device))
    return statistics.median(times[0]), statistics.median(times[1])


def _bare_forward(model: nn.Module, tensors: list[tuple[torch.Tensor, int]]) -> None:
    model.eval()
    with torch.inference_mode():
        for inputs, batch_size in tensors:
            for start in range(0, len(inputs), batch_size):
                model(inputs[start : start + batch_size])


def cifar_sized(n_train: int, n_valid: int, seed: int = 0) -> DataSplits:
    """Return random uint8 images of CIFAR-10's shape held in memory (no download).

    Args:
        n_train: training images (CIFAR-10: 45,000 after a 5,000-image validation split).
        n_valid: validation images.
        seed: seeds the pixels and labels.
    """
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorImageSet:
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 10, (n,), generator=generator)
        return TensorImageSet(images, labels, 10, CIFAR_MEAN, CIFAR_STD)

    valid = split(n_valid)
    return DataSplits("cifar-sized", split(n_train), valid, valid, 10)


def bench_evaluation(
    supernet: nn.Module, data: DataSplits, bn_images: int, repeats: int, device: torch.device
) -> tuple[list[Row], float]:
    """Time BN recalibration + evaluation against a bare forward over the same tensors.

    Args:
        supernet: the supernet the candidate is extracted from.
        data: the dataset.
        bn_images: training images the BN statistics are recomputed on.
        repeats: interleaved repetitions (medians are reported).
        device: where to run.

    Returns:
        The rows and the seconds of one whole candidate evaluation (extraction included).
    """
    supernet = supernet.to(device)
    subnet = MobileNetV3Space(resolutions=(RESOLUTION,)).sample(np.random.default_rng(0), 1)[0]
    extract = statistics.median(
        _seconds(lambda: extract_subnet(supernet, subnet), device) for _ in range(repeats)
    )
    model = extract_subnet(supernet, subnet).to(device)
    n_bn = min(bn_images, len(data.train))
    indices = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:n_bn]
    floor_tensors = [
        (data.train.subset(indices.tolist()).tensors(RESOLUTION, device)[0], 200),
        (data.valid.tensors(RESOLUTION, device)[0], 500),
    ]

    def ours() -> None:
        recalibrate_bn(model, data.train, resolution=RESOLUTION, n_images=n_bn, device=device)
        evaluate(model, data.valid, resolution=RESOLUTION, device=device)

    ours()  # warm-up: the validation tensors are cached, kernels chosen
    ours_s, floor_s = _interleaved(ours, lambda: _bare_forward(model, floor_tensors), device, repeats)
    ratio = ours_s / floor_s
    rows = [
        Row("1", f"{data.name}: subnet extraction", f"{1000 * extract:.0f} ms", "", None, "", None),
        Row(
            "1", f"{data.name}: BN recal ({n_bn} img) + eval ({len(data.valid)} img)",
            f"{1000 * ours_s:.0f} ms", f"{1000 * floor_s:.0f} ms bare fwd", ratio, "≤ 1.3×",
            ratio <= 1.3,
        ),
    ]
    return rows, extract + ours_s


def _plain_epoch(model: nn.Module, train: ImageSet, device: torch.device, seed: int) -> None:
    """The loop of a PyTorch tutorial: the floor of fine_tune."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-5)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for images, labels in train.batches(
        64, RESOLUTION, shuffle=True, augment=True, generator=generator, device=device
    ):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()


def _plain_sandwich_epoch(supernet: nn.Module, train: ImageSet, device: torch.device, seed: int) -> None:
    """The same sandwich step as train_supernet, written as plainly as possible: its floor."""
    space = MobileNetV3Space(resolutions=(RESOLUTION,))
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.02, momentum=0.9, weight_decay=3e-5)
    supernet.train()
    generator = torch.Generator().manual_seed(seed)
    for images, labels in train.batches(
        64, RESOLUTION, shuffle=True, augment=True, generator=generator, device=device
    ):
        optimizer.zero_grad()
        supernet.set_max_net()
        teacher = supernet(images)
        F.cross_entropy(teacher, labels).backward()
        soft = teacher.detach().softmax(dim=1)
        for subnet in [space.smallest(), *space.sample(rng, 2)]:
            supernet.set_active_subnet(ks=subnet["ks"], e=subnet["e"], d=subnet["d"])
            (-(soft * supernet(images).log_softmax(dim=1)).sum(dim=1).mean()).backward()
        optimizer.step()


def bench_training(
    supernet: nn.Module, data: DataSplits, n_images: int, repeats: int, device: torch.device
) -> list[Row]:
    """Compare fine-tuning and supernet training throughput with plain PyTorch loops.

    Args:
        supernet: the supernet, copied before each timed epoch.
        data: the dataset.
        n_images: training images per timed epoch.
        repeats: interleaved repetitions.
        device: where to run.
    """
    train = data.train.subset(range(min(n_images, len(data.train))))
    model = extract_subnet(supernet, MobileNetV3Space(resolutions=(RESOLUTION,)).largest()).to(device)
    split = DataSplits(data.name, train, data.valid.subset(range(2)), data.test, data.n_classes)
    times: dict[str, list[float]] = {"tune": [], "plain": [], "supernet": [], "sandwich": []}
    # The first training step of a process costs several later ones (allocator, kernels):
    # taken here, untimed, so that neither side pays it.
    _plain_epoch(copy.deepcopy(model), train.subset(range(2)), device, 0)
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            # Copies are made outside the timed calls; turns alternate so load hits all alike.
            network = copy.deepcopy(model)
            times["tune"].append(_seconds(lambda network=network, repeat=repeat: fine_tune(
                network, train, FineTuneRecipe(epochs=1, device=device, seed=repeat), resolution=RESOLUTION,
            ), device))
            network = copy.deepcopy(model)
            times["plain"].append(_seconds(
                lambda network=network, repeat=repeat: _plain_epoch(network, train, device, repeat), device
            ))
            # train_supernet's own per-epoch figure leaves out its validation and checkpoint.
            times["supernet"].append(train_supernet(
                copy.deepcopy(supernet), split, epochs=1, out_path=Path(folder) / f"{repeat}.pth",
                device=device, resolutions=(RESOLUTION,), progress=False,
            )["seconds_per_epoch"])
            network = copy.deepcopy(supernet).to(device)
            times["sandwich"].append(_seconds(
                lambda network=network, repeat=repeat: _plain_sandwich_epoch(network, train, device, repeat), device
            ))
    tuned, plain, seconds, floors = (statistics.median(times[k]) for k in times)
    rates = (len(train) / tuned, len(train) / plain)
    super_rates = (len(train) / seconds, len(train) / floors)
    return [
        Row("2", f"{data.name}: fine-tuning, images/s ({len(train)} img)", f"{rates[0]:.0f}",
            f"{rates[1]:.0f} plain loop", rates[0] / rates[1], "≥ 0.9×", rates[0] / rates[1] >= 0.9),
        Row("2", f"{data.name}: supernet sandwich step, images/s", f"{super_rates[0]:.1f}",
            f"{super_rates[1]:.1f} plain loop", super_rates[0] / super_rates[1], "≥ 0.9×",
            super_rates[0] / super_rates[1] >= 0.9),
    ]


def _fake_trials(space: MobileNetV3Space, costs: CostOptions, first: int, n: int) -> list[optuna.trial.FrozenTrial]:
    """Completed trials as a search stores them: genes, objectives, constraints, user attrs."""
    distributions = space.distributions()
    rng = np.random.default_rng(first)
    trials = []
    for number, subnet in enumerate(space.sample(rng, n), start=first):
        figures = exact_costs(costs, subnet)
        top1 = float(rng.uniform(50.0, 99.0))
        trial = optuna.trial.create_trial(
            params=space.encode(subnet), distributions=distributions,
            values=[top1, figures["macs"]],
            constraints={"macs": figures["macs"] - 1e9},
            user_attrs={"subnet": subnet, "top1": top1, **figures, "feasible": True},
            # NSGA-II reads its generation from here: give it full populations to select from.
            system_attrs={"NSGAIISampler:generation": number // NSGA2_POPULATION},
        )
        trial.number = number
        trials.append(trial)
    return trials


def _bulk_add(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> None:
    """Insert finished trials with a few multi-row statements (``add_trials`` commits every row
    of every trial through the ORM: minutes for 5,000 trials). Uses Optuna's RDB tables."""
    import json

    from optuna.distributions import distribution_to_json

    engine, models = rdb_tables(study)
    with engine.begin() as connection:
        connection.execute(models.TrialModel.__table__.insert(), [
            {"number": t.number, "study_id": study_id(study), "state": t.state.name,
             "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete}
            for t in trials
        ])
        ids = dict(connection.execute(
            models.TrialModel.__table__.select()
            .with_only_columns(models.TrialModel.__table__.c.number, models.TrialModel.__table__.c.trial_id)
            .where(models.TrialModel.__table__.c.study_id == study_id(study))
        ).fetchall())
        connection.execute(models.TrialParamModel.__table__.insert(), [
            {"trial_id": ids[t.number], "param_name": name,
             "param_value": t.distributions[name].to_internal_repr(value),
             "distribution_json": distribution_to_json(t.distributions[name])}
            for t in trials for name, value in t.params.items()
        ])
        connection.execute(models.TrialValueModel.__table__.insert(), [
            {"trial_id": ids[t.number], "objective": i, "value": value, "value_type": "FINITE"}
            for t in trials for i, value in enumerate(t.values)
        ])
        for model, attribute in ((models.TrialUserAttributeModel, "user_attrs"),
                                 (models.TrialSystemAttributeModel, "system_attrs")):
            connection.execute(model.__table__.insert(), [
                {"trial_id": ids[t.number], "key": key, "value_json": json.dumps(value)}
                for t in trials for key, value in getattr(t, attribute).items()
            ])


def _open_worker(
    url: str, study_name: str, sampler: optuna.samplers.BaseSampler, space: MobileNetV3Space,
    objective: NASObjective | None,
) -> tuple[Callable[[], float], float]:
    """Open the study as a new worker does; return a function timing one trial, and the
    seconds of the first trial (opening the study included).

    A trial is ``ask`` plus the suggestion of every gene, plus for our sampler the objective's
    own reads (budget check, duplicate look-up). Trials are then failed, untimed.
    """
    started = time.perf_counter()
    study = optuna.load_study(study_name=study_name, storage=open_storage(url), sampler=sampler)
    # The storage a worker opens has heartbeats, which Optuna sends only from Study.optimize and
    # warns of at each ask(); these trials live milliseconds, so none is missed.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

    def one_trial() -> float:
        begin = time.perf_counter()
        trial = study.ask()
        params = {name: suggest(trial, name, d) for name, d in space.distributions().items()}
        if objective is not None:
            completed = objective._wait_for_budget(trial)
            objective._find_evaluated(completed, objective.space.key(objective.space.decode(params)))
        seconds = time.perf_counter() - begin
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return seconds

    one_trial()
    return one_trial, time.perf_counter() - started


def _store_batches(study: optuna.Study, space: MobileNetV3Space, n_doe: int, first: int, n: int) -> None:
    """Store the batches that trials ``first .. first + n - 1`` take, so that sampling them
    times the sampler's reads, not a surrogate step (item 4 times that)."""
    rng = np.random.default_rng(first)
    for k in range((first - n_doe) // N_ITER + 1, (first + n - 1 - n_doe) // N_ITER + 2):
        study.set_user_attr(f"{BATCH_ATTR_PREFIX}{k:04d}", {
            "iteration": k, "subnets": space.sample(rng, N_ITER), "predicted": {"top1": [0.0] * N_ITER},
        })


def bench_sampler_overhead(url: str, label: str, sizes: tuple[int, ...], n_trials: int) -> list[Row]:
    """Time our sampler and objective reads per trial against NSGAIISampler on one study.

    Args:
        url: the storage.
        label: its name in the table.
        sizes: completed trials the study holds at each measurement.
        n_trials: trials asked per sampler and size (the first one opens the study).
    """
    space = MobileNetV3Space(resolutions=(RESOLUTION,))
    name = f"bench-overhead-{uuid.uuid4().hex[:8]}"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        config = SearchConfig(
            dataset="digits", sec_obj="macs", n_doe=10, n_iter=N_ITER, iterations=10**6,
            save=folder,
        ).validate()
        costs = config.cost_options()
        study = optuna.create_study(
            study_name=name, storage=open_storage(url), directions=["maximize", "minimize"]
        )
        try:
            held = 0
            for size in sizes:
                started = time.perf_counter()
                # add_trials numbers them after the failed ones the previous size asked.
                _bulk_add(study, _fake_trials(space, costs, len(study.get_trials(deepcopy=False)), size - held))
                held = size
                build = time.perf_counter() - started
                first_number = len(study.get_trials(deepcopy=False))
                _store_batches(study, space, config.n_doe, first_number, 2 * (n_trials + 1))
                sampler = SurrogateSampler(
                    strategy=NASStrategy(space, functools.partial(exact_costs, costs), objectives=["top1", "macs"]),
                    n_doe=config.n_doe, n_iter=N_ITER,
                )
                objective = NASObjective(config, CandidateEvaluator(config, folder), folder)
                nsga2 = optuna.samplers.NSGAIISampler(population_size=NSGA2_POPULATION, seed=0)
                ours_trial, ours_first = _open_worker(url, name, sampler, space, objective)
                their_trial, their_first = _open_worker(url, name, nsga2, space, None)
                # Trials in turns, so that a change of machine load hits both alike.
                warm = [(ours_trial(), their_trial()) for _ in range(n_trials)]
                ours = (ours_first, statistics.median(w[0] for w in warm))
                theirs = (their_first, statistics.median(w[1] for w in warm))
                for which, index in (("first trial of a new worker", 0), ("per trial, warm", 1)):
                    ratio = ours[index] / theirs[index]
                    rows.append(Row(
                        "3", f"{label} {size:,} trials: {which}", f"{1000 * ours[index]:.0f} ms",
                        f"{1000 * theirs[index]:.0f} ms NSGAII", ratio, "≤ 1×", ratio <= 1.0,
                    ))
                print(f"  [{label} {size} trials built in {build:.1f} s]", file=sys.stderr, flush=True)
            # Per-trial time at the largest size over the smallest, against the size ratio.
            warm_rows = rows[1::2]
            for which, theirs in (("ours", False), ("NSGAII", True)):
                first, last = (float(r.reference.split()[0] if theirs else r.ours.split()[0])
                               for r in (warm_rows[0], warm_rows[-1]))
                growth = (last / first) / (sizes[-1] / sizes[0])
                rows.append(Row(
                    "3", f"{label}: {which} per-trial time growth {sizes[0]:,} → {sizes[-1]:,}, "
                    "over linear", f"{last / first:.2f}×", f"{sizes[-1] / sizes[0]:.0f}× trials",
                    growth, "≤ 1" if not theirs else "", growth <= 1 if not theirs else None,
                ))
        finally:
            optuna.delete_study(study_name=name, storage=open_storage(url))
    return rows


def bench_surrogate(
    names: tuple[str, ...], sizes: tuple[int, ...], n_offspring: int, evaluation_s: float
) -> list[Row]:
    """Time each predictor's fit and the scoring of offspring against one candidate evaluation.

    Args:
        names: the predictors; the first one scores the offspring and makes the surrogate step.
        sizes: evaluated architectures the predictors are fitted on.
        n_offspring: offspring scored by the first predictor (fitted on the largest size) and
            exact costs, as the sampler's NSGA-II scores them (the costs vectorised, as the
            sampler computes them, and one vector at a time for comparison).
        evaluation_s: seconds of one candidate evaluation on digits (item 1).
    """
    costs = SearchConfig(dataset="digits", sec_obj="macs").validate().cost_options()
    space = costs.space
    rng = np.random.default_rng(0)
    choices = [len(values) for values in space.choices()]
    n = max(sizes)
    vectors = np.column_stack([rng.integers(c, size=n + n_offspring) for c in choices])
    history, offspring = vectors[:n], vectors[n:]
    # A smooth synthetic accuracy of the encoding: only the timings matter here.
    top1 = 70.0 + 3.0 * np.tanh(space.features(history) @ rng.normal(size=len(choices)) / 10)
    rows = []
    fits: dict[tuple[str, int], float] = {}
    predicts: dict[str, float] = {}
    features = space.features(offspring)
    for name in names:
        for size in sizes:
            predictor = get_predictor(name, random_state=0)
            fits[name, size] = _seconds(
                lambda predictor=predictor, size=size: predictor.fit(space.features(history[:size]), top1[:size]),
                torch.device("cpu"),
            )
        # Fitted on the largest size: the offspring are scored by it.
        predicts[name] = _seconds(lambda predictor=predictor: predictor.predict(features), torch.device("cpu"))
        rows.append(Row(
            "4", f"fit {name} on " + " / ".join(f"{s:,}" for s in sizes) + f"; predict {len(offspring):,}",
            " / ".join(f"{fits[name, s]:.2f}" for s in sizes) + f" s; {predicts[name]:.2f} s", "", None, "", None,
        ))
    step = MSuNASStep(space, functools.partial(exact_costs, costs), objectives=["top1", "macs"], constraint_bounds={})
    vector_costs = exact_costs_vectors(costs, space)
    started = time.perf_counter()
    for vector in offspring:
        step.costs_of(vector)
    loop_s = time.perf_counter() - started
    # The first call tabulates every part's costs, once per sampler: timed apart.
    tables_s = _seconds(lambda: vector_costs(offspring[:1]), torch.device("cpu"))
    costs_s = _seconds(lambda: vector_costs(offspring), torch.device("cpu"))
    rows.append(Row(
        "4", f"exact costs of {len(offspring):,} offspring: vectorised (tables {tables_s * 1e3:.0f} ms once) "
        "against one at a time",
        f"{costs_s:.3f} s ({loop_s / costs_s:,.0f}× faster)", f"{loop_s:.2f} s", costs_s / loop_s, "", None,
    ))
    for name in names:
        steps = [fits[name, size] + predicts[name] + costs_s for size in sizes]
        worst = max(steps) / evaluation_s
        rows.append(Row(
            "4", f"surrogate step (fit + {len(offspring):,} offspring scored) with {name}, at "
            + " / ".join(f"{s:,}" for s in sizes) + " architectures ÷ one candidate evaluation",
            " / ".join(f"{step:.2f}" for step in steps) + " s", f"{evaluation_s:.2f} s one eval",
            worst, "≤ 0.5×", worst <= 0.5,
        ))
    return rows


def bench_profile(n: int, n_classes: int) -> list[Row]:
    """Time ``costs.profile`` (cold and warm) against torchprofile on the extracted network.

    Args:
        n: random architectures (widths 1.0 and 1.2, r 128-224).
        n_classes: classifier outputs.
    """
    from torchprofile import profile_macs

    space = MobileNetV3Space.from_range(128, 224, 4, search_width=(1.0, 1.2))
    subnets = space.sample(np.random.default_rng(0), n)
    supernets = {w: build_supernet(n_classes, w) for w in sorted({s["w"] for s in subnets})}
    cold, warm, traced, identical = [], [], [], 0
    for subnet in subnets:
        costs.clear_cache()
        started = time.perf_counter()
        figures = costs.profile(subnet, n_classes)
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(100):
            costs.profile(subnet, n_classes)
        warm.append((time.perf_counter() - started) / 100)
        network = extract_subnet(supernets[subnet["w"]], subnet).eval()
        image = torch.randn(1, 3, subnet["r"], subnet["r"])
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs = profile_macs(network, image)
        traced.append(time.perf_counter() - started)
        params = sum(p.numel() for p in network.parameters())
        identical += round(figures["macs"] * 1e6) == macs and round(figures["params"] * 1e6) == params
    cold_s, warm_s, traced_s = (statistics.median(c) for c in (cold, warm, traced))
    return [
        Row("5", f"profile vs torchprofile, {n} archs, cold cache", f"{1e6 * cold_s:.0f} µs",
            f"{1000 * traced_s:.0f} ms", traced_s / cold_s, "≥ 1000× faster", traced_s / cold_s >= 1000),
        Row("5", "profile vs torchprofile, warm cache", f"{1e6 * warm_s:.0f} µs",
            f"{1000 * traced_s:.0f} ms", traced_s / warm_s, "≥ 1000× faster", traced_s / warm_s >= 1000),
        Row("5", "figures identical (MACs and params exact)", f"{identical}/{n}", "", None,
            "all", identical == n),
    ]


def bench_end_to_end(device: str) -> list[Row]:
    """Run the README's search command in a fresh folder; report wall time, supernet time, RSS.

    Args:
        device: the ``--device`` option.
    """
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "optnas.cli", *README_COMMAND.split(), "--device", device],
            cwd=folder, capture_output=True, text=True,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"the README search failed: {result.stderr.strip().splitlines()[-1]}")
        checkpoint = next(Path(folder).rglob("supernet-*.pth"))
        history = torch.load(checkpoint, map_location="cpu", weights_only=False)["history"]
    supernet_s = sum(epoch["seconds"] for epoch in history)
    # ru_maxrss is in KiB on Linux: the largest child, i.e. the search process.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return [
        Row("6", "README search, wall time", f"{wall:.0f} s", "", None, "< 180 s", wall < 180),
        Row("6", "  of which supernet training (3 epochs)", f"{supernet_s:.0f} s", "", None, "", None),
        Row("6", "  peak resident memory", f"{peak_mib:.0f} MiB", "", None, "", None),
    ]


def print_table(rows: list[Row]) -> None:
    """Print the rows as one Markdown table.

    Args:
        rows: the measurements.
    """
    print("| item | measurement | ours | floor / baseline | ratio | goal | holds |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:,.2f}" if row.ratio < 100 else f"{row.ratio:,.0f}"
        met = "" if row.met is None else "yes" if row.met else "**no**"
        print(f"| {row.item} | {row.what} | {row.ours} | {row.reference} | {ratio} | {row.goal} | {met} |")


def main(argv: list[str] | None = None) -> list[Row]:
    """Run the measurements, print the table and return its rows.

    Args:
        argv: command-line arguments (``sys.argv`` when None).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on tiny sizes (seconds)")
    parser.add_argument("--e2e", action="store_true", help="also run the README search (minutes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="PostgreSQL URL; 'none' skips it")
    parser.add_argument(
        "--only", nargs="+", choices=("1", "2", "3", "4", "5"), default=("1", "2", "3", "4", "5"),
        help="run these items only (item 4 takes its evaluation time from item 1)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    device = torch.device(args.device)
    quick = args.quick
    repeats = 1 if quick else 3
    rows: list[Row] = []

    @contextlib.contextmanager
    def stage(title: str) -> Iterator[bool]:
        if title[0] not in args.only and title[0] != "6":
            yield False
            return
        started, before = time.perf_counter(), len(rows)
        print(f"[{title}]", file=sys.stderr, flush=True)
        yield True
        for row in rows[before:]:  # as soon as measured: a long run shows its progress
            print(f"  {row.what}: {row.ours} vs {row.reference}", file=sys.stderr, flush=True)
        print(f"[{title}: {time.perf_counter() - started:.1f} s]", file=sys.stderr, flush=True)

    digits = load_dataset("digits")
    if quick:
        digits = DataSplits("digits", digits.train.subset(range(128)), digits.valid.subset(range(64)),
                            digits.test, digits.n_classes)
    # Untrained weights time like trained ones; both datasets have 10 classes.
    supernet = build_supernet(10)
    evaluation_s = math.nan
    with stage("1 candidate evaluation") as selected:
        if selected:
            cifar = cifar_sized(*((128, 64) if quick else (45_000, 5_000)))
            new_rows, evaluation_s = bench_evaluation(supernet, digits, 2000, repeats, device)
            rows += new_rows
            rows += bench_evaluation(supernet, cifar, 2000, repeats, device)[0]
    with stage("2 training throughput") as selected:
        if selected:
            rows += bench_training(supernet.cpu(), digits, 16 if quick else 640, repeats, device)
    with stage("3 sampler overhead") as selected:
        storages = [(f"sqlite:///{tempfile.mkdtemp()}/bench.db", "SQLite")]
        if args.postgres != "none":
            storages.append((args.postgres, "PostgreSQL"))
        for url, label in storages if selected else []:
            rows += bench_sampler_overhead(
                url, label, (20,) if quick else (100, 1000, 5000), 2 if quick else 6
            )
    with stage("4 surrogate step") as selected:
        if selected:
            rows += bench_surrogate(
                ("rbf", "gp") if quick else PREDICTOR_NAMES, (20, 50) if quick else (100, 500, 2000),
                500 if quick else 100_000, evaluation_s,
            )
    with stage("5 profiling") as selected:
        if selected:
            rows += bench_profile(2 if quick else 20, 10 if quick else 1000)
    if args.e2e:
        with stage("6 end to end"):
            rows += bench_end_to_end(args.device)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
