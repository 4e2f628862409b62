"""Training a chosen architecture to convergence (``optnas train DIR``).

``DIR`` is a folder written by ``optnas select``: ``net.subnet``, ``net.stats``, optionally
``ckpt.pth`` (the weights the search fine-tuned) and ``source.json`` (the study and the
supernet it came from). Training starts from ``ckpt.pth`` when it exists, else from the
weights the subnet inherits from the supernet; it writes ``train-state.pth`` after every
epoch (resumable), then ``final.pth`` and the final ``net.stats``. An eemobilenetv3 subnet
(with ``exits``) is an :class:`~optnas.networks.early_exits.EarlyExitNetwork`, trained with the joint
loss of every exit and scored with the subnet's thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optnas.artifacts import (
    FINAL_FILE,
    SEARCH_CHECKPOINT,
    STATE_FILE,
    STATS_FILE,
    load_checkpoint,
    read_source,
    read_stats,
    read_subnet,
    save_checkpoint,
    write_json,
)
from optnas.data.datasets import load_dataset
from optnas.errors import OptionError
from optnas.networks.costs import profile
from optnas.networks.early_exits import exit_outputs, exit_stats
from optnas.networks.exit_costs import exit_profile
from optnas.networks.inference import evaluate, recalibrate_bn
from optnas.networks.standalone import build_network, load_weights
from optnas.networks.supernet import load_supernet
from optnas.spaces import Subnet
from optnas.training.early_exits import joint_loss
from optnas.training.loop import fine_tune
from optnas.training.recipes import FineTuneRecipe

logger = logging.getLogger(__name__)


def initial_network(
    folder: str | Path, subnet: Subnet, n_classes: int, supernet_path: str | Path | None = None,
) -> tuple[nn.Module, str]:
    """Return the network to start training from and a description of its weights.

    Args:
        folder: the chosen architecture's folder; its ``ckpt.pth`` wins when present.
        subnet: the architecture, from :func:`read_subnet`.
        n_classes: outputs of the classifier.
        supernet_path: the supernet to inherit from when there is no ``ckpt.pth``; None: the
            supernet named in ``source.json``.
    """
    checkpoint = Path(folder) / SEARCH_CHECKPOINT
    if checkpoint.is_file():
        network = build_network(subnet, n_classes)
        load_weights(network, checkpoint)
        return network, str(checkpoint)
    supernet_path = supernet_path or read_source(folder).get("supernet")
    if supernet_path is None:
        raise OptionError(
            "{folder} has no {checkpoint} and no supernet is known: pass {supernet_path} "
            "(e.g. the supernet-*.pth file in the search's {save} folder)", folder=folder, checkpoint=SEARCH_CHECKPOINT
        )
    supernet, messages = load_supernet(supernet_path, n_classes, subnet["w"])
    for message in messages:
        logger.warning(message)
    return build_network(subnet, n_classes, supernet), f"inherited from {supernet_path}"


def train_final(
    folder: str | Path,
    *,
    epochs: int,
    dataset: str = "digits",
    data_dir: str | None = None,
    vld_size: int | None = None,
    n_classes: int | None = None,
    supernet_path: str | Path | None = None,
    resume: bool = False,
    lr: float = 0.01,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Train a chosen architecture, evaluate it on the validation and test splits, write its files.

    Training is :func:`optnas.training.loop.fine_tune` (SGD, cosine per epoch) on the training split
    (the validation images stay held out, as in the search); BN statistics are then recomputed
    and the network scored. ``net.stats`` keeps the search's figures, with ``top1`` replaced by
    the final validation accuracy and ``search_top1``, ``top1_test`` and ``train`` added.
    An early-exit network trains backbone and heads together with the EDANAS joint loss
    (:func:`optnas.training.early_exits.joint_loss`) and is scored with its subnet's thresholds:
    ``top1``, ``avg_macs``, ``exit_ratios``, ``exit_top1`` on the validation split, the same
    with ``_test`` on the test split, and ``exit_macs``, ``epsilon``.

    Args:
        folder: the chosen architecture's folder.
        epochs: training epochs (0: only recalibrate and evaluate the starting weights).
        dataset: the dataset name.
        data_dir: its folder (not for digits).
        vld_size: validation images held out of the training split.
        n_classes: outputs of the classifier [default: the dataset's].
        supernet_path: the supernet to inherit from when the folder has no ``ckpt.pth``.
        resume: continue from ``train-state.pth`` instead of starting over.
        lr: initial learning rate.
        batch_size: images per step.
        device: torch device.
        seed: seeds the split, shuffling, augmentation and dropout.
        progress: show a progress bar.
        echo: where messages go.

    Returns:
        The final stats.
    """
    if epochs < 0:
        raise OptionError("{epochs} must be zero or more, got {value}", value=epochs)
    folder = Path(folder)
    subnet = read_subnet(folder)
    data = load_dataset(dataset, data_dir, vld_size=vld_size, seed=seed)
    n_classes = n_classes or data.n_classes
    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "dataset": dataset,
                "vld_size": vld_size}
    state_path = folder / STATE_FILE
    state = None
    if resume:
        state = _read_state(state_path, settings)
        network = build_network(subnet, n_classes)
        network.load_state_dict(state["state_dict"])
        settings["start"] = state["settings"]["start"]
        echo(f"Resuming {folder} at epoch {state['training']['epoch']}/{epochs}")
    else:
        network, settings["start"] = initial_network(folder, subnet, n_classes, supernet_path)
        echo(f"Training {folder} for {epochs} epochs from weights {settings['start']}")
    network.to(device)

    def save_state(epoch: int, training: dict[str, Any]) -> None:
        # The subnet as plain JSON values: checkpoints load with weights_only=True.
        save_checkpoint({"state_dict": network.state_dict(), "training": training, "settings": settings,
                           "subnet": dict(subnet)}, state_path)

    resolution = int(subnet["r"])
    recipe = FineTuneRecipe(epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed)
    fine_tune(network, data.train, recipe, resolution=resolution, progress=progress, on_epoch_end=save_state,
              resume=None if state is None else state["training"],
              loss=_joint_loss if subnet.has_exits else None)
    recalibrate_bn(network, data.train, resolution=resolution, device=device, seed=seed)
    save_checkpoint({"state_dict": network.state_dict(), "subnet": dict(subnet)}, folder / FINAL_FILE)

    stats = read_stats(folder)
    if "top1" in stats and "search_top1" not in stats:
        stats["search_top1"] = stats["top1"]
    stats.update(profile(subnet.backbone(), n_classes))
    if subnet.has_exits:
        stats.update(_early_exit_stats(network, subnet, data, n_classes, device))
    else:
        stats["top1"] = evaluate(network, data.valid, resolution=resolution, device=device)
        stats["top1_test"] = evaluate(network, data.test, resolution=resolution, device=device)
    stats["train"] = {**settings, "data": data_dir, "n_classes": n_classes}
    write_json(folder / STATS_FILE, stats)
    return stats


def _joint_loss(outputs: tuple[list[torch.Tensor], list[torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
    """The EDANAS joint loss of an early-exit network's output (every exit's logits, confidences)."""
    return joint_loss(*outputs, labels)


def _early_exit_stats(
    network: nn.Module, subnet: Subnet, data: Any, n_classes: int, device: str,
) -> dict[str, Any]:
    """Early-exit figures under the subnet's thresholds, as the search reports them.

    Validation figures keep the search's names (``top1``, ``avg_macs``, ``exit_ratios``,
    ``exit_top1``); the test split's get ``_test`` appended. ``params`` counts every head,
    ``macs`` the backbone with its final exit alone, ``exit_macs`` the cost of leaving at each exit.
    """
    costs = exit_profile(subnet, n_classes)
    stats: dict[str, Any] = {key: costs[key] for key in ("params", "macs", "exit_macs")}
    stats["epsilon"] = list(network.epsilon)
    for split, suffix in ((data.valid, ""), (data.test, "_test")):
        outputs = exit_outputs(network, split, resolution=int(subnet["r"]), device=device)
        figures = exit_stats(*outputs, network.epsilon, costs["exit_macs"])
        del figures["exit_macs"]  # the same for both splits, stored once
        stats.update({f"{key}{suffix}": value for key, value in figures.items()})
    return stats


def _read_state(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    if not path.is_file():
        raise OptionError("{resume}: {path} does not exist; run without {resume} to start", path=path)
    state = load_checkpoint(path)
    stored = state["settings"]
    different = [f"{key} {stored[key]!r} (given {settings[key]!r})"
                 for key in settings if stored.get(key) != settings[key]]
    if different:
        raise OptionError("{resume}: {path} was written with other settings: {different}", path=path,
                          different="; ".join(different))
    return state


