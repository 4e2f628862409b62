"""`SearchConfig`: every search option with its default, its help text and its validation.

The CLI builds its options from :data:`OPTIONS`, studies store the configuration as JSON in
their user attributes, and ``--config`` files (YAML or TOML) hold the same keys.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optnas.boards import BOARDS, board_key
from optnas.data.catalog import DATASETS, class_names, n_classes_of
from optnas.errors import OptionError
from optnas.figures import (
    BOUNDS,
    FIGURES,
    FIRST_OBJECTIVES,
    MAXIMA,
    SECOND_OBJECTIVES,
    Figure,
    bounded_figure,
    from_latency_table,
    objectives_of,
    second_objective_help,
)
from optnas.latency import RUNTIMES
from optnas.networks.costs import tiny_ml
from optnas.predictors import PREDICTOR_NAMES
from optnas.spaces import SPACE_NAMES, SPACES, SearchSpace, SpaceOptions
from optnas.spaces.mobilenetv3 import DEFAULT_WIDTH_MULT, WIDTH_MULTS
from optnas.training import EE_METHODS, OPTIMIZERS
from optnas.training.recipes import ExitRecipe, FineTuneRecipe

# How a candidate's latency is obtained: predicted from a layer table, or timed end to end.
LATENCY_MODES = ("table", "measure")
# How `optnas select` and `report` choose after the most accurate network: lowest in a
# (minimised) figure, or the best trade-offs.
PREFERENCES = (*SECOND_OBJECTIVES, "trade-off")
SAMPLERS = ("surrogate", "nsga2", "tpe", "gp", "random")
# Every dataset name: the image datasets, then the tables of spaces that are looked up.
ALL_DATASETS = tuple(dict.fromkeys(DATASETS + tuple(d for space in SPACES.values() for d in space.datasets or ())))

# Options that may differ between the run that created a study and a run that resumes it:
# where and how fast it runs, not what it searches.
RUNTIME_OPTIONS = frozenset({"iterations", "device", "n_workers", "threads", "save", "save_ckpt"})


@dataclasses.dataclass(frozen=True)
class CostOptions:
    """What the exact costs of a search's candidates depend on (:mod:`optnas.evaluation.costs`).

    Args:
        space: the search space.
        n_classes: the classifier's class count.
        dataset: the dataset (the table of a space that looks figures up).
        seed: the search's seed (of a table's lookups).
        latency_table: the latency table file latency is predicted with, or None (timed, not
            asked for, or a space that looks it up).
        tiny_ml: the figure of merit with the search's weights, bounds and penalty, of
            (params, macs, activations).
    """

    space: SearchSpace
    n_classes: int
    dataset: str
    seed: int
    latency_table: str | None
    tiny_ml: Callable[[float, float, float], float]


def _option(default: Any, help: str, **metadata: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass
class SearchConfig:
    """All options of a search. Units: params, MACs and activations in millions; top1 in %."""

    search_space: str = _option(
        "mobilenetv3", "Search space: the OFA MobileNetV3 space or the NAS-Bench-201 cells "
        "(evaluated by table lookup).", choices=SPACE_NAMES
    )
    dataset: str = _option(
        "digits", "Dataset. 'digits' is scikit-learn's embedded handwritten digits and needs "
        "nothing on disk; the others are read from --data (nothing is downloaded): mnist and "
        "fashion-mnist from torchvision's raw files (DIR/MNIST/raw/*-ubyte[.gz], "
        "DIR/FashionMNIST/raw/...), cifar10, cifar100, svhn, cinic10 and imagenet in their "
        "published formats, and 'folder' for your own images: DIR/train/<class>/* and "
        "DIR/test/<class>/* (optionally DIR/val/<class>/*), any class names, image sizes and "
        "modes; its classes are the sorted class folders, recorded in the study (README: 'Your "
        "own data'). With nasbench201: cifar10, cifar100 or imagenet16 select the table.",
        choices=ALL_DATASETS,
    )
    data: str | None = _option(
        None, "Folder holding the dataset files (layouts: see --dataset and the README); not needed for digits."
    )
    n_classes: int | None = _option(
        None, "Number of classes [default: the dataset's].", type=int
    )
    supernet_path: str | None = _option(
        None, "OFA MobileNetV3 supernet checkpoint (published format, a dict with "
        "'state_dict'). Without it a supernet is trained on the spot on the dataset."
    )
    supernet_epochs: int = _option(
        12, "Epochs of supernet training when no --supernet-path is given: the largest network "
        "alone first (--supernet-warmup-epochs), then the sandwich rule.", type=int
    )
    supernet_warmup_epochs: int | None = _option(
        None, "Of --supernet-epochs, those training the largest network alone before the sandwich "
        "rule distils it into the others [default: half].", type=int
    )
    first_obj: str = _option(
        "top1", "First objective: top1 = validation accuracy in % (maximised), or top1_robust = "
        "alpha*(100-top1) + alpha_norm*(1-alpha)*robustness (minimised; see --alpha, --sigma).",
        choices=FIRST_OBJECTIVES,
    )
    sec_obj: str = _option(
        "macs", f"Second objective (minimised): {second_objective_help()}, or none for a single-objective search.",
        choices=(*SECOND_OBJECTIVES, "none"),
    )
    iterations: int = _option(
        30, "Search iterations after the initial design; each evaluates --n-iter "
        "architectures. The budget is n_doe + iterations x n_iter completed trials.", type=int
    )
    n_doe: int = _option(100, "Architectures in the initial design of experiments.", type=int)
    n_iter: int = _option(8, "Architectures evaluated per iteration.", type=int)
    n_epochs: int = _option(
        5, "Fine-tuning epochs of each candidate after weight inheritance (0 allowed).",
        type=int,
    )
    vld_size: int | None = _option(
        None, "Images held out from the training split to score candidates "
        "[default: the dataset's, see the README].", type=int
    )
    pmax: float | None = _option(None, "Constraint: maximum params (M); unset means unconstrained.", type=float)
    mmax: float | None = _option(
        None, "Constraint: maximum MACs (M), avg_macs with eemobilenetv3; unset means unconstrained.",
        type=float,
    )
    amax: float | None = _option(None, "Constraint: maximum activations (M); unset means unconstrained.", type=float)
    lmax: float | None = _option(
        None, "Constraint: maximum latency (ms, batch 1; see --latency). With eemobilenetv3 it "
        "bounds the whole network, every exit run: a deadline holds for every image.", type=float,
    )
    flash_max: float | None = _option(
        None, "Constraint: maximum flash of the int8 network (KB = 1024 bytes: int8 weights, "
        "per-channel scales, int32 biases; mobilenetv3); unset means unconstrained.", type=float,
    )
    sram_max: float | None = _option(
        None, "Constraint: maximum peak SRAM of the int8 network's activations (KB = 1024 bytes; "
        "mobilenetv3); unset means unconstrained.", type=float,
    )
    arena_max: float | None = _option(
        None, "Constraint: maximum TensorFlow Lite Micro arena of the int8 network (KB = 1024 bytes: "
        "its activations as TFLM's planner places them, padded copies included, and the interpreter's "
        "per-layer data; see `optnas export --format tflite`; mobilenetv3); unset means unconstrained.",
        type=float,
    )
    tflite_max: float | None = _option(
        None, "Constraint: maximum size of the int8 .tflite flatbuffer in flash (KB = 1024 bytes; "
        "mobilenetv3); unset means unconstrained.", type=float,
    )
    board: str | None = _option(
        None, "Target microcontroller (see `optnas boards`): its SRAM and flash less the firmware's "
        "reserve bound arena_kb and tflite_kb; --arena-max and --tflite-max may only tighten them.",
        choices=tuple(BOARDS),
    )
    int8: bool = _option(
        False, "Score every candidate as deployed in int8: top1 is its validation accuracy after "
        "the static post-training quantization of `optnas export --int8` (the float figure is "
        "kept as top1_float), so the Pareto set ranks the accuracy the device sees. Costs an "
        "ONNX export, a calibration and an onnxruntime pass per candidate (mobilenetv3).",
        is_flag=True,
    )
    calib_images: int = _option(
        256, "--int8: training images that calibrate the activation ranges, drawn once per "
        "search with --seed (those `optnas export --int8` draws with the same --calib-images).",
        type=int,
    )
    latency: str = _option(
        "table", "How a candidate's latency is obtained: table = predicted from --latency-table "
        "(exact from the encoding, microseconds), measure = timed end to end on this machine in "
        "--latency-runtime. nasbench201 reads its table's column instead.", choices=LATENCY_MODES,
    )
    latency_table: str | None = _option(
        None, "Latency table (lut.json) of the target device, from `optnas latency table` or "
        "the device script; with it every trial stores its predicted latency."
    )
    latency_runtime: str = _option(
        "onnxruntime", "--latency measure: where candidates are timed (onnxruntime or torch).",
        choices=RUNTIMES,
    )
    latency_threads: int = _option(1, "--latency measure: CPU threads of the timed runtime.", type=int)
    top1min: float | None = _option(
        None, "Constraint: minimum validation top1 accuracy (%); unset means unconstrained.", type=float
    )
    wp: float = _option(1.0, "tiny_ml weight of params.", type=float)
    wm: float = _option(1.0 / 40.0, "tiny_ml weight of MACs.", type=float)
    wa: float = _option(1.0, "tiny_ml weight of activations.", type=float)
    penalty: float = _option(
        1e10, "tiny_ml penalty factor applied to each constraint violation.", type=float
    )
    # The reference's flags (--lr, --ur, --rstep) name the resolution range.
    min_resolution: int = _option(32, "Lowest input resolution of the search.", type=int, flag="lr")
    max_resolution: int = _option(32, "Highest input resolution of the search.", type=int, flag="ur")
    resolution_step: int = _option(4, "Step between searched resolutions.", type=int, flag="rstep")
    width_mult: float = _option(
        DEFAULT_WIDTH_MULT, "Width multiplier of the MobileNetV3 supernet: "
        f"{', '.join(str(width) for width in WIDTH_MULTS)} (below 1.0 without the feature mix layer).", type=float
    )
    sampler: str = _option(
        "surrogate", "Sampler: surrogate-assisted NSGA-II (surrogate), or Optuna's NSGAIISampler "
        "(nsga2), TPESampler (tpe), GPSampler (gp), RandomSampler (random) as baselines.",
        choices=SAMPLERS,
    )
    predictor: str = _option(
        "as", "Accuracy predictor of the surrogate sampler: adaptive switching (as: the best of "
        "the others by cross-validated Kendall tau), carts, rbf, mlp, gp or xgb.",
        choices=PREDICTOR_NAMES,
    )
    sec_predictor: str = _option(
        "as", "Predictor of every other figure the surrogate sampler needs and cannot compute "
        "from the encoding: a second objective such as avg_macs or top1_robust, or top1 for "
        "--top1min beside another first objective. Same choices as --predictor.",
        choices=PREDICTOR_NAMES,
    )
    trust_radius: int = _option(
        2, "Surrogate sampler: candidates differ in at most this many genes from an evaluated "
        "architecture, where the predictors have seen data; 0 lets them lie anywhere.", type=int
    )
    device: str = _option("cpu", "Torch device for training and evaluation, e.g. cuda:0.")
    n_workers: int = _option(0, "Data-loading worker processes (folder datasets).", type=int)
    threads: int | None = _option(
        None, "Torch CPU threads of this process [default: one per physical core it may run on; "
        "more threads than free cores slow training several-fold].", type=int
    )
    seed: int = _option(0, "Seed of the whole search (sampler, splits, training).", type=int)
    save: str = _option(
        "optnas-runs", "Folder for the supernet, artifacts and per-trial files."
    )
    save_ckpt: bool = _option(
        False, "Keep each candidate's fine-tuned weights (ckpt.pth) as a trial artifact.",
        is_flag=True,
    )
    alpha: float = _option(
        0.5, "top1_robust: weight of the top1 error; 1 - alpha weighs the robustness term.",
        type=float,
    )
    sigma: str = _option(
        "0.05", "top1_robust: relative size(s) of the multiplicative Gaussian weight noise "
        "w + sigma*w*z, comma-separated (e.g. 0.05,0.1); robustness averages over them.",
    )
    flat_samples: int = _option(
        20, "top1_robust: noise draws per sigma when measuring robustness.", type=int
    )
    optim: str = _option(
        "sgd", "Fine-tuning optimiser of candidates: sgd, or sharpness-aware sam / asam (two "
        "passes per step).", choices=OPTIMIZERS,
    )
    rho: float | None = _option(
        None, "Neighbourhood radius of --optim sam / asam [default: 0.05 for sam, 0.5 for asam].",
        type=float,
    )

    ee_method: str = _option(
        "joint", "eemobilenetv3: how exits are trained: joint (EDANAS: backbone and heads, sum "
        "of per-exit losses) or confidence (NACHOS: frozen backbone, heads with a learned "
        "confidence, a loss rewarding early exits that are right).", choices=EE_METHODS,
    )
    warmup_ee_epochs: int = _option(
        1, "eemobilenetv3: epochs training the exit heads alone on the frozen backbone.", type=int
    )
    ee_epochs: int = _option(
        1, "eemobilenetv3: epochs of --ee-method training after the warm-up.", type=int
    )
    w_alpha: float = _option(1.0, "--ee-method confidence: weight of the accuracy term.", type=float)
    w_beta: float = _option(
        1.0, "--ee-method confidence: weight of the energy term (expected MACs over --mmax).",
        type=float,
    )
    w_gamma: float = _option(
        1.0, "--ee-method confidence: weight of the support-set term (with --support-set).",
        type=float,
    )
    support_set: bool = _option(
        False, "--ee-method confidence: hold out 10 % of the training images, class-balanced, "
        "and pull each exit's confidence toward its per-class accuracy on them.", is_flag=True,
    )
    tune_epsilon: bool = _option(
        False, "eemobilenetv3: choose the exit thresholds on the validation split, maximising "
        "top1 subject to --mmax (on avg_macs) and --top1min, instead of the eps genes.",
        is_flag=True,
    )

    def __post_init__(self) -> None:
        # YAML and JSON give sigma as a number or a list; keep one canonical text form so
        # that a resumed study compares equal. A malformed value is left for validate().
        values = self.sigma if isinstance(self.sigma, (list, tuple)) else str(self.sigma).split(",")
        try:
            self.sigma = ",".join(str(float(value)) for value in values)
        except (TypeError, ValueError):
            pass
        if self.board is not None:
            self.board = board_key(str(self.board))
            board = BOARDS.get(self.board)
            # The board's budgets are the bounds unless a tighter one is given (validate() refuses a looser one).
            if board is not None:
                self.arena_max = board.arena_budget_kb if self.arena_max is None else self.arena_max
                self.tflite_max = board.tflite_budget_kb if self.tflite_max is None else self.tflite_max

    @property
    def sigmas(self) -> list[float]:
        """The noise sizes of ``--sigma``, as numbers."""
        try:
            values = [float(part) for part in str(self.sigma).split(",") if part.strip()]
        except ValueError:
            raise OptionError("{sigma} must be comma-separated numbers, got {value!r}", value=self.sigma) from None
        if not values or any(not (math.isfinite(v) and v >= 0) for v in values):
            raise OptionError("{sigma} must be one or more numbers >= 0, got {value!r}", value=self.sigma)
        return values

    def validate(self) -> SearchConfig:
        """Check every option and the options' coherence; raise :class:`OptionError` on the first problem."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            choices = field.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:
                raise OptionError("{" + field.name + "} must be one of {choices}, got {value!r}",
                                  choices=list(choices), value=value)
        if self.board is not None:
            self._validate_board()
        if self.width_mult not in WIDTH_MULTS:
            raise OptionError("{width_mult} must be one of {choices}, got {value}", choices=list(WIDTH_MULTS),
                              value=self.width_mult)
        if self.threads is not None and self.threads < 1:
            raise OptionError("{threads} must be at least 1, got {value}", value=self.threads)
        if self.supernet_warmup_epochs is not None and not 0 <= self.supernet_warmup_epochs <= self.supernet_epochs:
            raise OptionError("{supernet_warmup_epochs} must be between 0 and {supernet_epochs} ({epochs}), "
                              "got {value}", epochs=self.supernet_epochs, value=self.supernet_warmup_epochs)
        for name in ("iterations", "n_epochs", "n_workers", "supernet_epochs", "trust_radius",
                     "warmup_ee_epochs", "ee_epochs"):
            if getattr(self, name) < 0:
                raise OptionError("{" + name + "} must be zero or more, got {value}", value=getattr(self, name))
        for name in ("n_doe", "n_iter"):
            if getattr(self, name) < 1:
                raise OptionError("{" + name + "} must be at least 1, got {value}", value=getattr(self, name))
        for name in MAXIMA:
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise OptionError("{" + name + "} must be a positive number, got {value}", value=value)
        if self.top1min is not None and not 0 <= self.top1min <= 100:
            raise OptionError("{top1min} is a top1 accuracy in %, between 0 and 100, got {value}", value=self.top1min)
        if self.calib_images < 1:
            raise OptionError("{calib_images} must be at least 1, got {value}", value=self.calib_images)
        if self.int8 and "top1_robust" in self.objectives:
            # The robustness term perturbs float weights; mixing it with int8 accuracy ranks nothing real.
            raise OptionError("{int8} scores top1 after quantization; top1_robust measures float networks")
        if self.vld_size is not None and self.vld_size < 1:
            raise OptionError("{vld_size} must be at least 1, got {value}", value=self.vld_size)
        if self.n_classes is not None and self.n_classes < 2:
            raise OptionError("{n_classes} must be at least 2, got {value}", value=self.n_classes)
        self._validate_robust()
        self._validate_latency()
        for name in ("w_alpha", "w_beta", "w_gamma"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise OptionError("{" + name + "} must be a non-negative number, got {value}",
                                  value=getattr(self, name))
        self._validate_dataset()
        self._validate_figures()
        self._validate_capabilities()
        self.make_space()
        return self

    def _validate_board(self) -> None:
        """Refuse a bound looser than the board's budget (a tighter one is the user's margin)."""
        board = BOARDS[self.board]
        spaces = FIGURES["arena_kb"].spaces
        if self.search_space not in spaces:
            raise OptionError("{board} bounds the TensorFlow Lite Micro figures of {search_space} {spaces}, "
                              "not {space}", spaces=_either(spaces), space=self.search_space)
        for option, budget in (("arena_max", board.arena_budget_kb), ("tflite_max", board.tflite_budget_kb)):
            if getattr(self, option) > budget:
                raise OptionError("{" + option + "} {value:g} exceeds the {budget} KB that {board} {name} leaves",
                                  value=getattr(self, option), budget=budget, name=board.name)

    def _validate_capabilities(self) -> None:
        """Refuse options the space's declared capabilities rule out."""
        space = self.space_class
        if not space.trains_networks:
            if self.latency_table is not None or self.latency != "table":
                raise OptionError("{space}'s latency is its table's column; {latency_table} and "
                                  "{latency} measure apply to mobilenetv3 networks", space=space.name)
            if self.optim != "sgd":
                raise OptionError("{optim} applies to fine-tuning; {space} is a table lookup", space=space.name)
        if space.has_exits and self.support_set and self.ee_method != "confidence":
            raise OptionError("{support_set} is part of {ee_method} confidence")
        if self.int8 and not space.supports_int8:
            raise OptionError("{int8} quantizes trained networks; {space} is a table lookup"
                              if not space.trains_networks else
                              "{int8} scores single-exit networks for now; use {search_space} mobilenetv3",
                              space=space.name)

    def _validate_robust(self) -> None:
        if self.first_obj == self.sec_obj:
            raise OptionError("{first_obj} and {sec_obj} are both {value}", value=self.first_obj)
        if not 0 <= self.alpha <= 1:
            raise OptionError("{alpha} must be between 0 and 1, got {value}", value=self.alpha)
        self.sigmas  # noqa: B018 - raises on a bad --sigma
        if self.flat_samples < 1:
            raise OptionError("{flat_samples} must be at least 1, got {value}", value=self.flat_samples)
        if self.rho is not None and not (self.rho > 0 and math.isfinite(self.rho)):
            raise OptionError("{rho} must be a positive number, got {value}", value=self.rho)

    def _validate_figures(self) -> None:
        """Refuse an objective or a bound on a figure the space does not have (:data:`FIGURES` says which)."""
        if self.sec_obj != "none":
            self._check_objective("sec_obj")
        for option in self._bound_options():
            self._bounded(option)
        self._check_objective("first_obj")

    def _check_objective(self, option: str) -> None:
        """Refuse ``--first-obj`` or ``--sec-obj`` (``option``) naming a figure the space does not have."""
        name, space = getattr(self, option), self.space_class
        if space.name in FIGURES[name].spaces:
            return
        if not space.trains_networks:
            # A table holds few figures: say which.
            no_objective = ("none",) if option == "sec_obj" else ()
            choices = objectives_of(space.name, first=option == "first_obj") + no_objective
            raise OptionError("{search_space} {space} supports {" + option + "} {choices}", space=space.name,
                              choices=_either(choices))
        raise OptionError("{" + option + "} {figure} needs {search_space} {spaces}", figure=name,
                          spaces=_either(FIGURES[name].spaces))

    def _bound_options(self) -> list[str]:
        """The bound options that are set, in the options' order."""
        return [field.name for field in dataclasses.fields(self)
                if field.name in BOUNDS and getattr(self, field.name) is not None]

    def _bounded(self, option: str) -> Figure:
        """The figure a set bound option bounds in this space (:class:`OptionError` where the space has none)."""
        figure = bounded_figure(option, self.search_space)
        if figure is None:
            supported = ["{" + field.name + "}" for field in dataclasses.fields(self)
                         if field.name in BOUNDS and bounded_figure(field.name, self.search_space) is not None]
            raise OptionError("{search_space} {space} has no figure for {" + option + "} to bound "
                              "(its bounds: " + ", ".join(supported) + ")", space=self.search_space)
        return figure

    @property
    def uses_latency(self) -> bool:
        """Whether a latency table (or timing) gives an objective of the search or a figure it bounds."""
        bounded = [bounded_figure(option, self.search_space) for option in self._bound_options()]
        names = self.objectives + [figure.name for figure in bounded if figure is not None]
        return any(from_latency_table(name) for name in names)

    def _validate_latency(self) -> None:
        if self.latency_threads < 1:
            raise OptionError("{latency_threads} must be at least 1, got {value}", value=self.latency_threads)
        if not self.space_class.trains_networks:
            return
        if self.latency == "table" and self.uses_latency and self.latency_table is None:
            raise OptionError(
                "latency needs {latency_table} lut.json (build one with `optnas latency table`) "
                "or {latency} measure"
            )
        per_exit = FIGURES[self.sec_obj].per_exit if self.sec_obj != "none" else None
        if per_exit is not None and from_latency_table(per_exit) and self.latency != "table":
            raise OptionError("{sec_obj} {figure} is predicted per exit from {latency_table}; "
                              "{latency} measure times whole networks", figure=self.sec_obj)

    def _validate_dataset(self) -> None:
        tables = self.space_class.datasets
        if tables is not None and self.dataset not in tables:
            raise OptionError("{search_space} {space} has tables for {tables}, not {dataset} {value}",
                              space=self.search_space, tables=list(tables), value=self.dataset)
        if tables is None and self.dataset not in DATASETS:
            owner = next(name for name, space in SPACES.items() if self.dataset in (space.datasets or ()))
            raise OptionError("{dataset} {value} is a {owner} table; use {search_space} {owner}", value=self.dataset,
                              owner=owner)
        if self.dataset == "folder":
            # The class folders give the class count: list them now, so that a bad tree is one
            # line before anything is stored, and record the count with the options, so that
            # what reads a stored configuration later (select, a worker's costs) needs no tree.
            if self.data is None:
                raise OptionError("{dataset} folder reads your images from {data} DIR (DIR/train/<class>/*, "
                                  "DIR/test/<class>/*)")
            count = len(self.class_names() or ())
            if self.n_classes is None:
                self.n_classes = count

    @property
    def space_class(self) -> type[SearchSpace]:
        """The class of the search space these options name."""
        return SPACES[self.search_space]

    def make_space(self) -> SearchSpace:
        """Build the search space these options describe (raises :class:`OptionError` if impossible)."""
        return self.space_class.from_options(self.space_options())

    def space_options(self) -> SpaceOptions:
        """The options the search space is built from."""
        return SpaceOptions(**{field.name: getattr(self, field.name) for field in dataclasses.fields(SpaceOptions)})

    def class_count(self) -> int:
        """Return the classifier's class count: ``--n-classes``, else the space's or the dataset's
        (with ``--dataset folder``, its class folders in ``--data``)."""
        if self.n_classes is not None:
            return self.n_classes
        fixed = self.space_class.n_classes(self.dataset)
        return fixed if fixed is not None else n_classes_of(self.dataset, self.data)

    def class_names(self) -> list[str] | None:
        """Return the dataset's class names in label order (cinic10, imagenet and folder: the sorted
        class folders of ``--data``), or None where they are not known (cifar100, the tables of
        nasbench201)."""
        if self.dataset not in DATASETS:
            return None
        names = class_names(self.dataset, self.data)
        return None if names is None else list(names)

    def dataset_key(self) -> str:
        """Name the data in file names (the supernet trained on the spot): the dataset, and for
        ``folder`` a digest of ``--data`` and its class names, so that another tree, or the same
        folder refilled with other classes, trains its own."""
        if self.dataset != "folder":
            return self.dataset
        digest = hashlib.sha1(json.dumps([self.data, self.class_names()]).encode()).hexdigest()
        return f"folder-{digest[:8]}"

    def fine_tune_recipe(self) -> FineTuneRecipe:
        """How each candidate is fine-tuned after weight inheritance (the recipe's other defaults)."""
        return FineTuneRecipe(epochs=self.n_epochs, optim=self.optim, rho=self.rho, device=self.device,
                              seed=self.seed)

    def exit_recipe(self) -> ExitRecipe:
        """How an eemobilenetv3 candidate's exits are trained and its thresholds chosen."""
        return ExitRecipe(method=self.ee_method, warmup_epochs=self.warmup_ee_epochs, ee_epochs=self.ee_epochs,
                          w_alpha=self.w_alpha, w_beta=self.w_beta, w_gamma=self.w_gamma,
                          support_set=self.support_set, mmax=self.mmax, tune=self.tune_epsilon,
                          top1min=self.top1min)

    def cost_options(self) -> CostOptions:
        """What the exact costs of the candidates depend on; ``tiny_ml`` weighs and penalises with
        these options' weights, bounds and penalty (``--mmax`` bounds avg_macs with early exits)."""
        space = self.make_space()
        table = self.latency_table if self.latency == "table" and space.trains_networks else None
        return CostOptions(
            space=space, n_classes=self.class_count(), dataset=self.dataset, seed=self.seed, latency_table=table,
            tiny_ml=functools.partial(tiny_ml, pmax=self.pmax, mmax=self.mmax, amax=self.amax, wp=self.wp,
                                      wm=self.wm, wa=self.wa, penalty=self.penalty),
        )

    @property
    def budget(self) -> int:
        """Completed trials the search aims for: the initial design plus every iteration."""
        return self.n_doe + self.iterations * self.n_iter

    @property
    def objectives(self) -> list[str]:
        """Names of the objectives, in order."""
        return [self.first_obj] + ([] if self.sec_obj == "none" else [self.sec_obj])

    @property
    def constraint_bounds(self) -> dict[str, float]:
        """The constraints that are set, by the name they are recorded under in the study, in the options' order."""
        return {self._bounded(option).constraint: getattr(self, option) for option in self._bound_options()}

    def default_study_name(self) -> str:
        """A study name derived from the space, the dataset and the objectives."""
        return "-".join([self.search_space, self.dataset, *self.objectives])

    def to_dict(self) -> dict[str, Any]:
        """Return every option as a JSON-serialisable dict, keyed by option name (``lr``, not
        ``min_resolution``): the form stored in studies and read from ``--config`` files."""
        return {option_key(field): getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SearchConfig:
        """Build a configuration from a dict, refusing unknown keys.

        Args:
            values: option names (underscores or dashes; ``lr`` or ``min_resolution``) and values.
        """
        by_key = {key: field.name for field in dataclasses.fields(cls) for key in (option_key(field), field.name)}
        normalised = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(normalised) - set(by_key))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}")
        return cls(**{by_key[key]: value for key, value in normalised.items()})


def option_key(field: dataclasses.Field) -> str:
    """Return the name an option has outside the code: its flag without dashes, as stored.

    Args:
        field: a field of :class:`SearchConfig`.
    """
    return field.metadata.get("flag", field.name)


def options() -> list[dataclasses.Field]:
    """Return the fields of :class:`SearchConfig`, in declaration order."""
    return list(dataclasses.fields(SearchConfig))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON options file.

    Args:
        path: the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read the config file {path}: {error.strerror}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            values = tomllib.loads(text)
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
    except Exception as error:  # noqa: BLE001 - every parser error becomes one line
        raise ValueError(f"{path}: not a valid {path.suffix.lstrip('.') or 'YAML'} file ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of options, got {type(values).__name__}")
    return values


def _either(names: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return " or ".join(filter(None, (", ".join(names[:-1]), names[-1])))


def flag(name: str) -> str:
    """Return the command-line flag of an option without its dashes (``lr`` for ``min_resolution``).

    Args:
        name: a field name of :class:`SearchConfig`.
    """
    field = next(field for field in dataclasses.fields(SearchConfig) if field.name == name)
    return option_key(field).replace("_", "-")
