"""The exact costs of a search's candidates, from their encoding alone, and the checks that
refuse unreachable bounds before any compute is spent. No torch: the surrogate sampler costs
its offspring with these, and building it (``optnas studies``, ``trials``) loads nothing heavy.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from optnas.config import SearchConfig
from optnas.errors import OptionError
from optnas.figures import FIGURES, by_constraint
from optnas.latency.table import LatencyTable
from optnas.networks.costs import profile, profile_vectors, space_widths
from optnas.networks.exit_costs import exit_profile
from optnas.networks.memory import memory, memory_vectors
from optnas.spaces.base import SearchSpace
from optnas.spaces.mobilenetv3 import MobileNetV3Space


def exact_costs(config: SearchConfig, subnet: dict[str, Any]) -> dict[str, float]:
    """Return the costs computable from the encoding alone, ``tiny_ml`` included where it is.

    Args:
        config: the search configuration.
        subnet: a canonical subnet of the configuration's space.
    """
    space_class = config.space_class
    if not space_class.trains_networks:
        figures = space_class.lookup(subnet, config.dataset, config.seed)
        return {"params": figures["params"], "latency": figures["latency"]}
    costs = profile(subnet, config.class_count())
    costs.update(memory(subnet, config.class_count()))
    table = latency_table(config)
    if table is not None:
        costs["latency"] = table.predict(subnet)
        if space_class.has_exits:
            costs["exit_latency"] = table.exit_latencies(subnet)
    if space_class.has_exits:
        # The network holds its exit heads too; MACs stay the backbone's (with its final exit).
        exits = exit_profile(subnet, config.class_count())
        costs.update(params=exits["params"], exit_macs=exits["exit_macs"])
        # tiny_ml weighs avg_macs here, known only after training: the evaluated stats hold it
        # (and the surrogate sampler predicts it).
        return costs
    costs["tiny_ml"] = config.tiny_ml(costs["params"], costs["macs"], costs["activations"])
    return costs


def exact_costs_vectors(config: SearchConfig, space: SearchSpace | None = None) -> VectorCosts | None:
    """Return :func:`exact_costs` for whole arrays of gene vectors, or None where no vectorised form exists.

    For plain mobilenetv3 spaces the figures are those of :func:`exact_costs` on
    ``space.from_vector(vector)``, equal to the bit, at a small fraction of the time.
    eemobilenetv3 (exit heads, per-exit figures) and nasbench201 (table lookups) have none:
    their costs are computed one vector at a time.

    Args:
        config: the search configuration.
        space: the space the vectors encode subnets of [default: ``config.make_space()``].
    """
    space = config.make_space() if space is None else space
    if not isinstance(space, MobileNetV3Space) or space.has_exits or config.space_class.has_exits:
        return None
    return VectorCosts(config, space)


class VectorCosts:
    """The exact costs of an int array (n, n_genes) of plain mobilenetv3 gene vectors: name → array (n,).

    Every part's costs, flash and latency-table entry are tabulated on the first call (so
    that building a sampler, e.g. to open a study, need not pay for it), then each call
    gathers and chains them. A class, not a closure, so that the sampler holding it pickles.

    Args:
        config: the search configuration.
        space: the space the vectors encode subnets of.
    """

    def __init__(self, config: SearchConfig, space: MobileNetV3Space) -> None:
        self.config = config
        self.space = space
        self._built: dict[str, Any] = {}

    def __call__(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        config, space, built = self.config, self.space, self._built
        n_classes = config.class_count()
        if "profile" not in built:
            built.update(profile=profile_vectors(space, n_classes), memory=memory_vectors(space, n_classes))
        vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, len(space.gene_names()))
        figures = built["profile"](vectors)
        figures.update(built["memory"](vectors, figures["peak_activations"]))
        table = latency_table(config)
        if table is not None:
            # The table is read again when its file changes, as exact_costs reads it.
            if built.get("table") is not table:
                built.update(table=table, latency=table.predict_vectors(space))
            figures["latency"] = built["latency"](vectors)
        figures["tiny_ml"] = config.tiny_ml(figures["params"], figures["macs"], figures["activations"])
        return figures

    def __getstate__(self) -> dict[str, Any]:
        # The tables hold closures; they are rebuilt after unpickling.
        return {"config": self.config, "space": self.space, "_built": {}}


def latency_table(config: SearchConfig) -> LatencyTable | None:
    """Return the latency table a search predicts latency with, or None (measured, or none asked for).

    Args:
        config: the search configuration.
    """
    if config.latency != "table" or config.latency_table is None or not config.space_class.trains_networks:
        return None
    path = Path(config.latency_table)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return LatencyTable.load(path)  # raises the one-line error
    return _read_table(str(path), stamp)


@functools.lru_cache(maxsize=8)
def _read_table(path: str, stamp: int) -> LatencyTable:
    # Every exact cost of every candidate the surrogate scores reads it: parse the file once
    # per version of it (the stamp is its modification time).
    return LatencyTable.load(path)


def check_latency_table(config: SearchConfig) -> None:
    """Refuse a latency table that lacks a layer of the space, or whose fastest network breaks ``--lmax``.

    Args:
        config: the search configuration.
    """
    table = latency_table(config)
    if table is None:
        return
    space = config.make_space()
    widths = space_widths(space)
    table.check_covers(widths, space.resolutions, config.class_count(), exits=space.has_exits)
    if config.lmax is not None:
        fastest, subnet = table.fastest(widths, space.resolutions)
        if fastest > config.lmax:
            raise OptionError(
                "no architecture satisfies {lmax} {bound:g}: the fastest one takes {fastest:.4g} ms "
                "by {table} (at resolution {resolution})", bound=config.lmax, fastest=fastest,
                table=config.latency_table, resolution=subnet["r"],
            )


def check_constraints_satisfiable(config: SearchConfig) -> None:
    """Refuse cost bounds that no architecture meets, before any compute is spent.

    The smallest architecture of a space is the cheapest in every cost, so it decides every
    bound on an exact figure (latency bounds: :func:`check_latency_table`).

    Args:
        config: the search configuration.
    """
    smallest = config.make_space().smallest()
    costs = exact_costs(config, smallest)
    for name, bound in config.constraint_bounds.items():
        figure = by_constraint(name)
        if figure.source == "exact":
            lowest = costs[name]
        elif figure.per_exit is not None and FIGURES[figure.per_exit].source == "exact":
            # No image can leave before the first exit of the smallest network.
            lowest = costs[figure.per_exit][0]
        else:
            continue
        if figure.constraint_value(lowest, bound) > 0:
            raise OptionError(
                "no architecture satisfies {" + figure.bound + "} {bound:g}: the smallest one has "
                "{lowest:.4g} {unit} {figure} (at resolution {resolution}, {classes} classes)", bound=bound,
                lowest=lowest, unit=figure.unit, figure=name, resolution=smallest.get("r", "-"),
                classes=config.class_count(),
            )
