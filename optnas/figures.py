"""Every figure a search records about an architecture, one record each: its unit, where it
comes from, which spaces have it, and its roles (objective, bound, hypervolume reference).

The options' choices, the study directions, the constraints, the pre-flight checks, the
hypervolume reference point, the stored trial attributes and the columns of ``optnas
select`` and ``report`` are derived from :data:`FIGURES`, so a new figure is its record here
and the function that computes it. Space names are plain strings: nothing of optnas is
imported here.
"""

from __future__ import annotations

import dataclasses

MINIMIZE = "minimize"
MAXIMIZE = "maximize"
# Where a figure comes from: computed from the encoding alone; predicted from a latency table
# (--latency-table; timed end to end with --latency measure); timed end to end; known once
# the candidate is trained, which the surrogate sampler predicts.
SOURCES = ("exact", "table", "measured", "predicted")
# Hypervolume reference rules besides a fixed number: 1.1 x the largest architecture's figure
# (timed where the encoding does not give it); the same at its last exit (an expectation over
# exits can reach no further); the same without penalties (feasible trials carry none).
REFERENCE_RULES = ("largest", "last_exit", "unpenalised")
# The figure `optnas select` times for the chosen networks of a search bounded by --lmax.
MEASURED_LATENCY = "measured_latency"

_ALL = ("mobilenetv3", "nasbench201", "eemobilenetv3")
_NETWORKS = ("mobilenetv3", "eemobilenetv3")
_SINGLE_EXIT = ("mobilenetv3",)
_EXITS = ("eemobilenetv3",)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure: what a trial stores under ``name`` (unless ``stored`` is False).

    Args:
        name: the key of the figure in stats, user attributes and columns.
        unit: ``%``, ``M`` (millions), ``ms`` or ``KB`` (1024 bytes); None for a plain number.
        source: one of :data:`SOURCES`.
        spaces: the search spaces whose architectures have it.
        direction: :data:`MINIMIZE` or :data:`MAXIMIZE` for a figure that may be an objective
            or bounded; None otherwise.
        bound: the :class:`~optnas.config.SearchConfig` option bounding it (a maximum of a
            minimised figure, a minimum of a maximised one).
        bounded_in: the spaces where ``bound`` bounds this figure [default: ``spaces``]; a space
            whose networks cost an expected amount per image bounds that instead.
        first_objective: may be ``--first-obj``.
        second_objective: may be ``--sec-obj``.
        reference: the hypervolume reference rule as the second objective: one of
            :data:`REFERENCE_RULES`, or a fixed number.
        per_exit: for an expectation over the exits, the stored figure of every exit.
        stored: stored on trials (False: measured by ``optnas select`` alone).
        help: its entry in ``--sec-obj``'s help ("": described with the figure before it).
    """

    name: str
    unit: str | None
    source: str
    spaces: tuple[str, ...]
    direction: str | None = None
    bound: str | None = None
    bounded_in: tuple[str, ...] | None = None
    first_objective: bool = False
    second_objective: bool = False
    reference: str | float = "largest"
    per_exit: str | None = None
    stored: bool = True
    help: str = ""

    @property
    def constraint(self) -> str | None:
        """The name its bound is recorded under in a study: the figure's own for a maximum,
        the option's for a minimum (``top1min``); None when it has no bound."""
        if self.bound is None:
            return None
        return self.name if self.direction == MINIMIZE else self.bound

    def bounded_by(self, option: str, space: str) -> bool:
        """Whether ``option`` bounds this figure in ``space``.

        Args:
            option: a bound option, e.g. ``mmax``.
            space: a search space name.
        """
        return self.bound == option and space in (self.spaces if self.bounded_in is None else self.bounded_in)

    def constraint_value(self, value: float, bound: float) -> float:
        """Return the constraint's value for a figure's value (≤ 0 means satisfied).

        Args:
            value: the figure of a candidate.
            bound: the bound.
        """
        return float(value - bound) if self.direction == MINIMIZE else float(bound - value)


# In the order trials store them (that of `net.stats`; never reordered: stored studies and
# files list them so). New figures go last.
FIGURES: dict[str, Figure] = {figure.name: figure for figure in (
    Figure("top1", "%", "predicted", _ALL, MAXIMIZE, bound="top1min", first_objective=True),
    # With --int8, top1 is the int8 network's and this the float network's.
    Figure("top1_float", "%", "predicted", _SINGLE_EXIT),
    Figure("params", "M", "exact", _ALL, MINIMIZE, bound="pmax", second_objective=True, help="params (M)"),
    Figure("macs", "M", "exact", _NETWORKS, MINIMIZE, bound="mmax", bounded_in=_SINGLE_EXIT,
           second_objective=True, help="macs (M)"),
    Figure("activations", "M", "exact", _NETWORKS, MINIMIZE, bound="amax", second_objective=True,
           help="activations (M)"),
    Figure("peak_activations", "M", "exact", _NETWORKS),
    # Exact for single-exit networks; eemobilenetv3 weighs avg_macs, known after training.
    Figure("tiny_ml", None, "exact", _NETWORKS, MINIMIZE, second_objective=True, reference="unpenalised",
           help="tiny_ml (penalised figure of merit)"),
    Figure("robustness", "%", "predicted", _SINGLE_EXIT),
    # Like the error it weighs, it lies in 0..100 in practice.
    Figure("top1_robust", None, "predicted", _SINGLE_EXIT, MINIMIZE, first_objective=True,
           second_objective=True, reference=100.0, help="top1_robust (see --first-obj)"),
    Figure("alpha_norm", None, "predicted", _SINGLE_EXIT),
    Figure("avg_macs", "M", "predicted", _EXITS, MINIMIZE, bound="mmax", second_objective=True,
           reference="last_exit", per_exit="exit_macs",
           help="avg_macs (M, expected MACs per image of an eemobilenetv3 network)"),
    Figure("exit_ratios", None, "predicted", _EXITS),
    Figure("exit_top1", "%", "predicted", _EXITS),
    Figure("exit_macs", "M", "exact", _EXITS),
    Figure("epsilon", None, "predicted", _EXITS),
    # nasbench201 reads its table's column.
    Figure("latency", "ms", "table", _ALL, MINIMIZE, bound="lmax", second_objective=True,
           help="latency (ms at batch 1, see --latency)"),
    Figure("latency_p90", "ms", "measured", _NETWORKS),
    Figure("avg_latency", "ms", "predicted", _EXITS, MINIMIZE, second_objective=True, reference="last_exit",
           per_exit="exit_latency",
           help="avg_latency (ms, expected latency per image of an eemobilenetv3 network)"),
    Figure("exit_latency", "ms", "table", _EXITS),
    Figure(MEASURED_LATENCY, "ms", "measured", _NETWORKS, stored=False),
    Figure("flash_kb", "KB", "exact", _NETWORKS, MINIMIZE, bound="flash_max", second_objective=True,
           help="flash_kb / sram_kb (KB of flash and SRAM of the int8 network, mobilenetv3 spaces)"),
    Figure("sram_kb", "KB", "exact", _NETWORKS, MINIMIZE, bound="sram_max", second_objective=True),
    Figure("flash_kb_float32", "KB", "exact", _NETWORKS),
    Figure("sram_kb_float32", "KB", "exact", _NETWORKS),
    # What TensorFlow Lite Micro needs for the int8 .tflite that `optnas export --format tflite` writes.
    Figure("arena_kb", "KB", "exact", _SINGLE_EXIT, MINIMIZE, bound="arena_max", second_objective=True,
           help="arena_kb / tflite_kb (KB of TensorFlow Lite Micro arena and .tflite flatbuffer of the int8 "
                "network, mobilenetv3; see --board)"),
    Figure("arena_head_kb", "KB", "exact", _SINGLE_EXIT),
    Figure("arena_tail_kb", "KB", "exact", _SINGLE_EXIT),
    Figure("tflite_kb", "KB", "exact", _SINGLE_EXIT, MINIMIZE, bound="tflite_max", second_objective=True),
)}


def _options_order(figures: list[Figure]) -> tuple[str, ...]:
    # A figure that may be either objective (top1_robust) is listed after the costs, as
    # --sec-obj's help refers it to --first-obj.
    return tuple(f.name for f in sorted(figures, key=lambda f: f.first_objective and f.second_objective))


# The figures trials store, in order (:data:`optnas.trial_attrs.STAT_KEYS`).
STORED = tuple(name for name, figure in FIGURES.items() if figure.stored)
FIRST_OBJECTIVES = tuple(name for name, figure in FIGURES.items() if figure.first_objective)
SECOND_OBJECTIVES = _options_order([figure for figure in FIGURES.values() if figure.second_objective])
# The figures `optnas select` prints: the objectives, and what it measured.
SUMMARY = _options_order([f for f in FIGURES.values() if f.first_objective or f.second_objective or not f.stored])
# The options bounding a figure, in the order of the figures (each once).
BOUNDS = tuple(dict.fromkeys(figure.bound for figure in FIGURES.values() if figure.bound))
# Those bounding a minimised figure from above (the others are minimums).
MAXIMA = tuple(dict.fromkeys(f.bound for f in FIGURES.values() if f.bound and f.direction == MINIMIZE))


def second_objective_help() -> str:
    """Return the description of every second objective, as ``--sec-obj``'s help lists them."""
    return ", ".join(FIGURES[name].help for name in SECOND_OBJECTIVES if FIGURES[name].help)


def bounded_figure(option: str, space: str) -> Figure | None:
    """Return the figure a bound option bounds in a space, None where the space has none.

    Args:
        option: a bound option of :data:`BOUNDS`, e.g. ``mmax``.
        space: a search space name.
    """
    return next((figure for figure in FIGURES.values() if figure.bounded_by(option, space)), None)


def by_constraint(name: str) -> Figure:
    """Return the figure whose bound a study records as constraint ``name``.

    Args:
        name: a constraint name (``params``, ``avg_macs``, ``top1min``, ...).
    """
    return next(figure for figure in FIGURES.values() if figure.constraint == name)


def objectives_of(space: str, first: bool) -> tuple[str, ...]:
    """Return the figures of a space that may be the first (or the second) objective, in the options' order.

    Args:
        space: a search space name.
        first: the first objective's choices, else the second's.
    """
    names = FIRST_OBJECTIVES if first else SECOND_OBJECTIVES
    return tuple(name for name in names if space in FIGURES[name].spaces)


def from_latency_table(name: str) -> bool:
    """Whether a figure is predicted from a latency table (or timed), itself or per exit.

    Args:
        name: a figure name.
    """
    figure = FIGURES[name]
    return figure.source == "table" or (figure.per_exit is not None and FIGURES[figure.per_exit].source == "table")
