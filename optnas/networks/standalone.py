"""A chosen architecture as a standalone network: built from its subnet, with its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from optnas.artifacts import FINAL_FILE, SEARCH_CHECKPOINT, load_checkpoint, read_subnet
from optnas.networks.costs import mobilenetv3_subnet
from optnas.networks.early_exits import EarlyExitNetwork
from optnas.networks.supernet import build_supernet, extract_subnet
from optnas.spaces import Subnet

_CLASSIFIER_WEIGHT = "classifier.linear.weight"


def build_network(subnet: dict[str, Any], n_classes: int, supernet: nn.Module | None = None) -> nn.Module:
    """Build the network of a chosen architecture: the one model builder of train and export.

    An eemobilenetv3 subnet gives an :class:`~optnas.networks.early_exits.EarlyExitNetwork` around
    the extracted backbone, with freshly initialised heads (seed 0).

    Args:
        subnet: a mobilenetv3 or eemobilenetv3 subnet, e.g. from :func:`read_subnet`.
        n_classes: outputs of the classifier.
        supernet: the supernet whose weights the backbone inherits; None builds it with
            freshly initialised weights (to load a checkpoint into).
    """
    subnet = mobilenetv3_subnet(subnet)
    backbone = subnet.backbone()
    if supernet is None:
        supernet = build_supernet(n_classes, backbone["w"])
    network = extract_subnet(supernet, backbone)
    return EarlyExitNetwork(network, subnet, n_classes) if subnet.has_exits else network


def load_weights(network: nn.Module, path: Path) -> None:
    """Load a ``{"state_dict": ...}`` checkpoint into a network, with one-line errors.

    Args:
        network: the network, built by :func:`build_network`.
        path: the checkpoint (read with ``weights_only=True``).
    """
    try:
        checkpoint = load_checkpoint(path)
        network.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError, TypeError, EOFError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a checkpoint of this architecture ({first_line})") from None


def load_chosen_network(folder: str | Path) -> tuple[nn.Module, Subnet, Path]:
    """Return the trained network of a chosen architecture, its subnet and its weight file.

    Args:
        folder: a folder of ``optnas select`` (``final.pth`` is preferred over ``ckpt.pth``).
    """
    folder = Path(folder)
    subnet = read_subnet(folder)
    weights = next((folder / name for name in (FINAL_FILE, SEARCH_CHECKPOINT) if (folder / name).is_file()), None)
    if weights is None:
        raise ValueError(f"{folder} holds no weights ({FINAL_FILE} or {SEARCH_CHECKPOINT}): "
                         f"run `optnas train {folder}` first")
    state = load_checkpoint(weights).get("state_dict", {})
    # The classifier tells the number of classes; an early-exit network holds it in its backbone.
    classifier = ("backbone." if subnet.has_exits else "") + _CLASSIFIER_WEIGHT
    if classifier not in state:
        raise ValueError(f"{weights}: not a checkpoint of this architecture (no {classifier})")
    network = build_network(subnet, int(state[classifier].shape[0]))
    load_weights(network, weights)
    return network.eval(), subnet, weights
