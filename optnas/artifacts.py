"""The files optnas writes and reads: one reader and one writer per format, one atomic save.

A *trial folder* (``<save>/<study>/trial-NNNNN/``) and a folder of ``optnas select``
(``net-<prefer>_<rank>/``) hold:

``net.subnet``
    The architecture, JSON, in its space's canonical form (see :mod:`optnas.spaces`), with
    ``"space"``: the space's name (files written before it was recorded still load).
``net.stats``
    Its figures, JSON (the trial's user attributes of :data:`optnas.trial_attrs.STAT_KEYS`;
    ``optnas train`` adds ``top1_test``, ``search_top1`` and ``train``).
``ckpt.pth``
    The weights the search fine-tuned (with ``--save-ckpt``), ``{"state_dict", "subnet"}``.
``source.json``
    Where a selected architecture came from: the study, its configuration, its supernet.
``train-state.pth`` / ``final.pth``
    ``optnas train``'s per-epoch state and its trained weights.

Checkpoints are always read with ``weights_only=True``. Every file that replaces an earlier
one is written next to it, flushed to disk and renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from optnas.spaces import SPACE_KEY, Subnet, as_subnet

SUBNET_FILE = "net.subnet"
STATS_FILE = "net.stats"
SEARCH_CHECKPOINT = "ckpt.pth"
SOURCE_FILE = "source.json"
STATE_FILE = "train-state.pth"
FINAL_FILE = "final.pth"
ARTIFACT_FOLDER = "artifacts"


def artifact_dir(save_dir: str | Path) -> Path:
    """Return the artifact store folder of a run folder.

    Args:
        save_dir: the run folder (``--save``).
    """
    return Path(save_dir) / ARTIFACT_FOLDER


def trial_dir(save_dir: str | Path, study_name: str, number: int) -> Path:
    """Return the folder of one trial's files.

    Args:
        save_dir: the run folder (``--save``).
        study_name: the study.
        number: the trial number.
    """
    return Path(save_dir) / study_name / f"trial-{number:05d}"


def _write_atomically(path: Path, mode: str, write: Callable[[IO], None]) -> None:
    """Write a file beside ``path``, flush it to disk, then rename it over ``path``.

    A kill or an error while writing leaves the previous ``path`` whole; an error removes
    the unfinished file (a kill leaves it, and the next write replaces it).

    Args:
        path: the file.
        mode: ``open``'s mode, ``w`` or ``wb``.
        write: writes the content into the open file.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, content: Any) -> None:
    """Write one JSON file (``net.subnet``, ``net.stats``, ``source.json``...), indented, atomically.

    Args:
        path: the file.
        content: JSON-serialisable content.
    """

    def dump(file: IO) -> None:
        json.dump(content, file, indent=2)
        file.write("\n")

    _write_atomically(Path(path), "w", dump)


def write_bytes(path: str | Path, content: bytes) -> None:
    """Write one binary file (an exported network), atomically.

    Args:
        path: the file.
        content: its bytes.
    """
    _write_atomically(Path(path), "wb", lambda file: file.write(content))


def read_json(path: str | Path, what: str) -> Any:
    """Read a JSON file with one-line errors.

    Args:
        path: the file.
        what: what the file should be, for the error message (e.g. ``a JSON net.subnet file``).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not {what} ({error})") from None


def read_subnet_file(path: str | Path) -> Subnet:
    """Read a mobilenetv3 or eemobilenetv3 ``net.subnet`` file, canonical, at its own resolution.

    The file must name its resolution ``r``: weights do not say what size they were trained
    at, so none is assumed.

    Args:
        path: the file.
    """
    raw = read_json(path, "a JSON net.subnet file")
    try:
        subnet = as_subnet(raw)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if not subnet.space.trains_networks:
        raise ValueError(f"{path}: a {subnet.space.name} net.subnet; this takes a mobilenetv3 or eemobilenetv3 one")
    return subnet


def read_stats(folder: str | Path) -> dict[str, Any]:
    """Return ``folder/net.stats``, or ``{}`` when there is none.

    Args:
        folder: a trial folder or a folder of ``optnas select``.
    """
    path = Path(folder) / STATS_FILE
    return read_json(path, "a JSON net.stats file") if path.is_file() else {}


def read_subnet(folder: str | Path) -> Subnet:
    """Read ``folder/net.subnet`` as the search scored it, checked and canonical.

    An early-exit subnet's thresholds are those the search scored it with, ``epsilon`` of
    ``folder/net.stats`` (one per exit) when present: with ``--tune-epsilon`` they differ from
    the sampled genes that ``net.subnet`` keeps.

    Args:
        folder: a folder written by ``optnas select``.
    """
    path = Path(folder) / SUBNET_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no such file; DIR must be a folder written by `optnas select`")
    subnet = read_subnet_file(path)
    searched = read_stats(folder).get("epsilon")
    if not subnet.has_exits or searched is None:
        return subnet
    stages = subnet.exit_stages
    stats_path = Path(folder) / STATS_FILE
    if not isinstance(searched, list) or len(searched) != len(stages):
        raise ValueError(f"{stats_path}: 'epsilon' must hold one threshold per exit ({len(stages)}), got {searched!r}")
    epsilon = list(subnet["epsilon"])
    for stage, value in zip(stages, searched):
        epsilon[stage] = value
    try:
        return subnet.space.canonical({**subnet, "epsilon": epsilon})
    except ValueError as error:
        raise ValueError(f"{stats_path}: {error}") from None


def write_architecture(folder: str | Path, subnet: Subnet, stats: dict[str, Any]) -> list[Path]:
    """Write ``net.subnet`` (naming its space) and ``net.stats`` into a folder (created if needed); return their paths.

    Args:
        folder: a trial folder or a folder of ``optnas select``.
        subnet: the canonical subnet.
        stats: its figures.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / SUBNET_FILE, folder / STATS_FILE]
    for path, content in zip(paths, ({SPACE_KEY: subnet.space.name, **subnet}, stats)):
        write_json(path, content)
    return paths


def read_source(folder: str | Path) -> dict[str, Any]:
    """Return ``folder/source.json`` (where a selected architecture came from), or ``{}``.

    Args:
        folder: a folder written by ``optnas select``.
    """
    path = Path(folder) / SOURCE_FILE
    return read_json(path, "a JSON source.json file") if path.is_file() else {}


def source_defaults(folder: str | Path) -> dict[str, Any]:
    """Return the data options of the search a selected architecture came from.

    Keys ``dataset``, ``data``, ``vld_size``, ``n_classes``, ``seed`` (only those the search
    stored), so that final training holds out the same validation images by default.

    Args:
        folder: a folder written by ``optnas select``.
    """
    config = read_source(folder).get("config", {})
    return {key: config[key] for key in ("dataset", "data", "vld_size", "n_classes", "seed") if key in config}


def save_checkpoint(content: dict[str, Any], path: str | Path) -> None:
    """Save a checkpoint atomically: written beside ``path``, flushed to disk, then renamed.

    Args:
        content: a dict of tensors and plain values (loadable with ``weights_only=True``).
        path: the checkpoint file.
    """
    # torch is imported on use: the commands that only read JSON files stay light.
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, "wb", lambda file: torch.save(content, file))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``, with one-line errors.

    Args:
        path: the checkpoint file.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            # Foreign pickles trigger protocol warnings; the error below says it all.
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for corrupt files
        if "not an allowed global" in str(error):
            reason = "holds Python objects besides tensors; only weights-only checkpoints load"
        else:
            reason = "not a PyTorch checkpoint, or truncated or corrupt"
        raise ValueError(f"{path}: {reason} ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict with 'state_dict'")
    return checkpoint
