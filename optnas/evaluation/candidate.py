"""Turn an architecture into its stats: exact costs (:mod:`optnas.evaluation.costs`) plus
accuracy after weight inheritance.

:class:`CandidateEvaluator` holds what every evaluation of a search shares (the data splits
and the supernet) so that it is prepared once per process.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from optnas.config import SearchConfig
from optnas.data.datasets import load_dataset
from optnas.errors import OptionError
from optnas.evaluation.costs import exact_costs
from optnas.evaluation.early_exits import evaluate_ee_candidate
from optnas.evaluation.flatness import robustness
from optnas.evaluation.inheritance import evaluate_candidate
from optnas.networks.quantization import calibration_indices, int8_top1
from optnas.networks.supernet import build_supernet, load_supernet
from optnas.training.distributed import barrier, launched_process_group, launched_ranks
from optnas.training.loop import set_threads
from optnas.training.supernet import resolved_warmup_epochs, train_supernet

logger = logging.getLogger(__name__)


class CandidateEvaluator:
    """Evaluates architectures of one search configuration.

    The configuration is read once, into what each part of an evaluation uses: the space, the
    data and supernet options, the fine-tuning and exit recipes, and what scoring adds to top1
    (int8, measured latency, robustness).

    Args:
        config: the search configuration.
        supernet_dir: where a supernet trained on the spot is kept (resumable).
        echo: where user-facing messages go (e.g. ``click.echo``).
        progress: show a progress bar while a supernet is trained on the spot.
    """

    def __init__(
        self,
        config: SearchConfig,
        supernet_dir: str | Path,
        echo: Callable[[str], None] = logger.info,
        progress: bool = True,
    ) -> None:
        costs = config.cost_options()
        self.space = costs.space
        self.n_classes = costs.n_classes
        self.recipe = config.fine_tune_recipe()
        self.exit_recipe = config.exit_recipe()
        self._dataset, self._data_dir, self._vld_size = config.dataset, config.data, config.vld_size
        self._n_workers, self._threads, self._seed = config.n_workers, config.threads, config.seed
        self._supernet_path = config.supernet_path
        self._width_mult = config.width_mult
        self._supernet_epochs = config.supernet_epochs
        self._supernet_warmup_epochs = resolved_warmup_epochs(config.supernet_epochs, config.supernet_warmup_epochs)
        # Named after what determines it, so that a search with other options trains its own.
        self._supernet_name = (
            f"supernet-{config.dataset_key()}-w{config.width_mult}-r{config.min_resolution}-{config.max_resolution}-"
            f"e{config.supernet_epochs}-warmup{self._supernet_warmup_epochs}-seed{config.seed}.pth"
        )
        self._costs = costs
        self._calib_images = config.calib_images if config.int8 else None
        self._measure_options = ({"runtime": config.latency_runtime, "threads": config.latency_threads}
                                 if config.latency == "measure" else None)
        self._robustness_options = ({"sigmas": config.sigmas, "n_samples": config.flat_samples, "seed": config.seed,
                                     "device": config.device} if "top1_robust" in config.objectives else None)
        self._supernet_dir = Path(supernet_dir)
        self._echo = echo
        self._progress = progress
        self._data = None
        self._supernet = None
        self._measurer = None
        self._int8_calibration = None

    @property
    def data(self) -> Any:
        """The dataset splits (loaded on first use)."""
        if self._data is None:
            self._data = load_dataset(self._dataset, self._data_dir, vld_size=self._vld_size, seed=self._seed,
                                      n_workers=self._n_workers)
            if self._data.n_classes > self.n_classes:
                raise OptionError(
                    "{dataset_name} at {folder} has {count} classes; pass {n_classes} {count}",
                    dataset_name=self._dataset, folder=self._data_dir, count=self._data.n_classes,
                )
        return self._data

    @property
    def supernet(self) -> torch.nn.Module:
        """The supernet: loaded from ``--supernet-path`` or trained on the spot (once)."""
        if self._supernet is None:
            self._supernet = self._prepare_supernet()
        return self._supernet

    def prepare(self, with_supernet: bool = True) -> None:
        """Load the data (and the supernet) now, so that their errors come before any trial.

        Args:
            with_supernet: also load or train the supernet.
        """
        if self.space.trains_networks:
            set_threads(self._threads)
            self.data  # noqa: B018
            if with_supernet:
                self.supernet  # noqa: B018

    def supernet_file(self) -> Path:
        """Where the supernet trained on the spot is kept; derived from what determines it."""
        return self._supernet_dir / self._supernet_name

    def supernet_warmup_epochs(self) -> int:
        """Epochs the supernet trained on the spot trains its largest network alone."""
        return self._supernet_warmup_epochs

    def _prepare_supernet(self) -> torch.nn.Module:
        device = self.recipe.device
        if self._supernet_path is not None:
            supernet, messages = load_supernet(self._supernet_path, self.n_classes, self._width_mult, device="cpu")
            for message in messages:
                self._echo(message)
            return supernet.to(device)
        path = self.supernet_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        supernet = build_supernet(self.n_classes, self._width_mult)
        # Under torchrun every process trains it with the others (data-parallel); the first one speaks.
        ranks = launched_ranks()
        if ranks.main:
            self._echo(f"Supernet: {path} ({self._supernet_epochs} epochs on {self._dataset}, "
                       f"the largest network alone for {self._supernet_warmup_epochs}"
                       + (f", on {ranks.size} processes)" if ranks.distributed else ")"))
        # Workers sharing the folder train it once: the others wait, then resume the finished file.
        # Under torchrun the first process holds the lock for all, and nobody reads the file before
        # it has it (the others wait at the barrier, up to torch.distributed's timeout).
        with launched_process_group(device) as process_device, \
                open(path.with_suffix(".lock"), "w") as lock:
            if ranks.main:
                fcntl.flock(lock, fcntl.LOCK_EX)
            barrier()
            train_supernet(
                supernet,
                self.data,
                epochs=self._supernet_epochs,
                warmup_epochs=self._supernet_warmup_epochs,
                out_path=path,
                device=process_device,
                seed=self._seed,
                resolutions=tuple(self.space.resolutions),
                progress=self._progress,
            )
        return supernet.to(device)

    def costs(self, subnet: dict[str, Any]) -> dict[str, float]:
        """Return the exact costs of an architecture (no network is built).

        Args:
            subnet: a canonical subnet of the search space.
        """
        return exact_costs(self._costs, subnet)

    def evaluate(self, subnet: dict[str, Any]) -> tuple[dict[str, Any], torch.nn.Module | None]:
        """Return the stats of an architecture and its fine-tuned network (None for tables).

        Stats: ``top1`` (validation accuracy, %), the costs (millions) and ``tiny_ml``; with a
        ``top1_robust`` objective also ``robustness`` (mean accuracy drop under weight noise,
        of the float network). With ``--int8``, ``top1`` is the accuracy of the network after
        static int8 quantization (:meth:`int8_top1`) and ``top1_float`` the float network's.

        Args:
            subnet: a canonical subnet of the search space.
        """
        if not self.space.trains_networks:
            return self.space.lookup(subnet, self._dataset, self._seed), None
        if self.space.has_exits:
            return self._evaluate_early_exits(subnet)
        top1, model = self.train(subnet)
        scores = ({"top1": self.int8_top1(model, subnet), "top1_float": float(top1)} if self._calib_images is not None
                  else {"top1": float(top1)})
        stats = {**scores, **self.costs(subnet), **self.measured_latency(subnet)}
        if self._robustness_options is not None:
            stats["robustness"] = robustness(model, self.data.valid, resolution=int(subnet["r"]), top1=top1,
                                             **self._robustness_options)
        return stats, model

    @property
    def int8_calibration(self) -> Any:
        """The training images that calibrate int8 networks: ``--calib-images`` drawn once with
        ``--seed``, the same as ``optnas export --int8`` draws (the subset caches its tensors)."""
        if self._int8_calibration is None:
            train = self.data.train
            self._int8_calibration = train.subset(
                calibration_indices(len(train), self._calib_images, self._seed))
        return self._int8_calibration
    def int8_top1(self, model: torch.nn.Module, subnet: dict[str, Any]) -> float:
        """Return the validation top1 (%) of a network after the int8 quantization of ``optnas export --int8``.

        Exported to ONNX (opset 17, batch dynamic) in a temporary folder, quantized (static QDQ,
        int8 per-channel weights, uint8 activations) on :attr:`int8_calibration`, run in onnxruntime.

        Args:
            model: the fine-tuned float network (left unchanged).
            subnet: its canonical subnet (its resolution ``r``).
        """
        resolution = int(subnet["r"])
        calibration, _ = self.int8_calibration.tensors(resolution)
        images, labels = self.data.valid.tensors(resolution)
        return int8_top1(model, calibration.numpy(), images.numpy(), labels.numpy(),
                         threads=torch.get_num_threads())

    def measured_latency(self, subnet: dict[str, Any]) -> dict[str, float]:
        """Return ``latency`` and ``latency_p90`` (ms) timed end to end with ``--latency measure``, else nothing.

        Args:
            subnet: a canonical subnet of a space that trains networks.
        """
        if self._measure_options is None:
            return {}
        if self._measurer is None:
            from optnas.latency.measure import Measurer

            # One supernet per width is built for every network this process times.
            self._measurer = Measurer(self.n_classes, **self._measure_options)
        timing = self._measurer.measure(subnet)
        return {"latency": timing["latency_ms"], "latency_p90": timing["p90_ms"]}

    def train(self, subnet: dict[str, Any]) -> tuple[float, torch.nn.Module]:
        """Return the validation top1 (%) and the network of a mobilenetv3 architecture.

        Inherited weights, fine-tuning by :attr:`recipe`, BN recalibration: the same network every time.

        Args:
            subnet: a canonical mobilenetv3 subnet.
        """
        return evaluate_candidate(self.supernet, subnet, self.data, self.recipe)

    def _evaluate_early_exits(self, subnet: dict[str, Any]) -> tuple[dict[str, Any], torch.nn.Module]:
        """Train and score an eemobilenetv3 candidate: backbone costs plus its exit stats."""
        stats, model = evaluate_ee_candidate(self.supernet, subnet, self.data, self.recipe, self.exit_recipe)
        stats = {**self.costs(subnet), **self.measured_latency(subnet), **stats}
        if "exit_latency" in stats:
            stats["avg_latency"] = float(sum(r * ms for r, ms in zip(stats["exit_ratios"], stats["exit_latency"])))
        # --mmax bounds avg_macs here, so tiny_ml weighs and penalises the expected MACs.
        stats["tiny_ml"] = self._costs.tiny_ml(stats["params"], stats["avg_macs"], stats["activations"])
        return stats, model
