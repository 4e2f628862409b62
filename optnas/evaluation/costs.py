"""The exact costs of a search's candidates, from their encoding alone, and the checks that
refuse unreachable bounds before any compute is spent. No torch: the surrogate sampler costs
its offspring with these, and building it (``optnas studies``, ``trials``) loads nothing heavy.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from optnas.boards import Board
from optnas.config import CostOptions
from optnas.errors import OptionError
from optnas.figures import FIGURES, by_constraint
from optnas.latency.table import LatencyTable
from optnas.networks.costs import profile, profile_vectors
from optnas.networks.exit_costs import exit_profile
from optnas.networks.memory import memory, memory_vectors
from optnas.networks.tflm_memory import TFLM_FIGURES, tflm_memory, tflm_memory_vectors
from optnas.spaces.base import SearchSpace
from optnas.spaces.mobilenetv3 import MobileNetV3Space


def exact_costs(options: CostOptions, subnet: dict[str, Any]) -> dict[str, float]:
    """Return the costs computable from the encoding alone, ``tiny_ml`` included where it is.

    Args:
        options: what the costs depend on (:meth:`~optnas.config.SearchConfig.cost_options`).
        subnet: a canonical subnet of the options' space.
    """
    space = options.space
    if not space.trains_networks:
        figures = space.lookup(subnet, options.dataset, options.seed)
        return {"params": figures["params"], "latency": figures["latency"]}
    costs = profile(subnet, options.n_classes)
    costs.update(memory(subnet, options.n_classes))
    if not space.has_exits:
        costs.update(tflm_memory(subnet, options.n_classes))
    table = latency_table(options)
    if table is not None:
        costs["latency"] = table.predict(subnet)
        if space.has_exits:
            costs["exit_latency"] = table.exit_latencies(subnet)
    if space.has_exits:
        # The network holds its exit heads too; MACs stay the backbone's (with its final exit).
        exits = exit_profile(subnet, options.n_classes)
        costs.update(params=exits["params"], exit_macs=exits["exit_macs"])
        # tiny_ml weighs avg_macs here, known only after training: the evaluated stats hold it
        # (and the surrogate sampler predicts it).
        return costs
    costs["tiny_ml"] = options.tiny_ml(costs["params"], costs["macs"], costs["activations"])
    return costs


def exact_costs_vectors(options: CostOptions, space: SearchSpace | None = None) -> VectorCosts | None:
    """Return :func:`exact_costs` for whole arrays of gene vectors, or None where no vectorised form exists.

    For plain mobilenetv3 spaces the figures are those of :func:`exact_costs` on
    ``space.from_vector(vector)``, equal to the bit, at a small fraction of the time.
    eemobilenetv3 (exit heads, per-exit figures) and nasbench201 (table lookups) have none:
    their costs are computed one vector at a time.

    Args:
        options: what the costs depend on (:meth:`~optnas.config.SearchConfig.cost_options`).
        space: the space the vectors encode subnets of [default: ``options.space``].
    """
    space = options.space if space is None else space
    if not isinstance(space, MobileNetV3Space) or space.has_exits or options.space.has_exits:
        return None
    return VectorCosts(options, space)


class VectorCosts:
    """The exact costs of an int array (n, n_genes) of plain mobilenetv3 gene vectors: name → array (n,).

    Every part's costs, flash and latency-table entry are tabulated on the first call (so
    that building a sampler, e.g. to open a study, need not pay for it), then each call
    gathers and chains them. A class, not a closure, so that the sampler holding it pickles.

    Args:
        options: what the costs depend on (:meth:`~optnas.config.SearchConfig.cost_options`).
        space: the space the vectors encode subnets of.
    """

    def __init__(self, options: CostOptions, space: MobileNetV3Space) -> None:
        self.options = options
        self.space = space
        self._built: dict[str, Any] = {}

    def __call__(self, vectors: np.ndarray, names: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Return the figures of every vector.

        Args:
            vectors: an int array (n, n_genes), or one vector.
            names: the figures needed [default: all]; the TFLite Micro ones, which lay out
                each distinct network's arena (about 1 ms each), are computed only when named.
        """
        options, space, built = self.options, self.space, self._built
        n_classes = options.n_classes
        if "profile" not in built:
            built.update(profile=profile_vectors(space, n_classes), memory=memory_vectors(space, n_classes),
                         tflm=tflm_memory_vectors(space, n_classes))
        vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, len(space.gene_names()))
        figures = built["profile"](vectors)
        figures.update(built["memory"](vectors, figures["peak_activations"]))
        if names is None or not TFLM_FIGURES.isdisjoint(names):
            figures.update(built["tflm"](vectors))
        table = latency_table(options)
        if table is not None:
            # The table is read again when its file changes, as exact_costs reads it.
            if built.get("table") is not table:
                built.update(table=table, latency=table.predict_vectors(space))
            figures["latency"] = built["latency"](vectors)
        figures["tiny_ml"] = options.tiny_ml(figures["params"], figures["macs"], figures["activations"])
        return figures

    def __getstate__(self) -> dict[str, Any]:
        # The tables hold closures; they are rebuilt after unpickling.
        return {"options": self.options, "space": self.space, "_built": {}}


def latency_table(options: CostOptions) -> LatencyTable | None:
    """Return the latency table a search predicts latency with, or None (measured, or none asked for).

    Args:
        options: what the costs depend on (:meth:`~optnas.config.SearchConfig.cost_options`).
    """
    if options.latency_table is None:
        return None
    path = Path(options.latency_table)
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


def check_latency_table(options: CostOptions, lmax: float | None) -> None:
    """Refuse a latency table that lacks a layer of the space, or whose fastest network breaks ``--lmax``.

    Args:
        options: what the costs depend on (:meth:`~optnas.config.SearchConfig.cost_options`).
        lmax: the bound on latency (ms), or None.
    """
    table = latency_table(options)
    if table is None:
        return
    space = options.space
    widths = space.widths
    table.check_covers(widths, space.resolutions, options.n_classes, exits=space.has_exits)
    if lmax is not None:
        fastest, subnet = table.fastest(widths, space.resolutions)
        if fastest > lmax:
            raise OptionError(
                "no architecture satisfies {lmax} {bound:g}: the fastest one takes {fastest:.4g} ms "
                "by {table} (at resolution {resolution})", bound=lmax, fastest=fastest,
                table=options.latency_table, resolution=subnet["r"],
            )


def check_board_fits(options: CostOptions, board: Board) -> None:
    """Refuse a board that no architecture of the space fits, naming what the smallest one needs.

    Args:
        options: what the costs depend on (:meth:`~optnas.config.SearchConfig.cost_options`).
        board: the target board; its budgets bound ``arena_kb`` and ``tflite_kb``.
    """
    smallest = options.space.smallest()
    costs = exact_costs(options, smallest)
    over = board.excess(costs["arena_kb"], costs["tflite_kb"])
    if over:
        raise OptionError("no architecture fits {board} {name}: the smallest one (resolution {resolution}, "
                          "{classes} classes) needs " + " and ".join(over), name=board.name,
                          resolution=smallest.get("r", "-"), classes=options.n_classes)


def check_constraints_satisfiable(options: CostOptions, bounds: dict[str, float]) -> None:
    """Refuse cost bounds that no architecture meets, before any compute is spent.

    The smallest architecture of a space is the cheapest in every cost, so it decides every
    bound on an exact figure (latency bounds: :func:`check_latency_table`).

    Args:
        options: what the costs depend on (:meth:`~optnas.config.SearchConfig.cost_options`).
        bounds: the constraints that are set, by the name they are recorded under
            (:attr:`~optnas.config.SearchConfig.constraint_bounds`).
    """
    smallest = options.space.smallest()
    costs = exact_costs(options, smallest)
    for name, bound in bounds.items():
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
                classes=options.n_classes,
            )
