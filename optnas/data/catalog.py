"""The datasets optnas reads: names, class counts and names, published statistics, file layouts,
and the class folders of folder datasets.

No torch: the command line's option checks and help text read this module, and a ``folder``
tree's classes are listed (not decoded) when the options are checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASETS = ("digits", "cifar10", "cifar100", "svhn", "cinic10", "imagenet", "mnist", "fashion-mnist", "folder")

# The datasets whose classes are the class folders of a tree (train/<class>/*, test/<class>/*).
FOLDER_DATASETS = ("cinic10", "imagenet", "folder")

# ``folder`` has no fixed count: its class folders give it.
N_CLASSES = {
    "digits": 10,
    "cifar10": 10,
    "cifar100": 100,
    "svhn": 10,
    "cinic10": 10,
    "imagenet": 1000,
    "mnist": 10,
    "fashion-mnist": 10,
}

_DIGIT_NAMES = tuple(str(digit) for digit in range(10))
# Class names in label order, as the datasets publish them; the datasets of FOLDER_DATASETS
# take their class folders' names.
CLASS_NAMES = {
    "digits": _DIGIT_NAMES,
    "mnist": _DIGIT_NAMES,
    "svhn": _DIGIT_NAMES,
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}

# Per-channel statistics of the training images scaled to [0, 1], as published with each
# dataset (MNIST and Fashion-MNIST: of their 60000 grey training images, the same on the three
# channels); digits' are computed at load time from its fixed train split, folder's from its
# training images (see optnas.data.datasets).
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cinic10": ((0.4789, 0.4723, 0.4305), (0.2421, 0.2383, 0.2587)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,) * 3, (0.3081,) * 3),
    "fashion-mnist": ((0.2860,) * 3, (0.3530,) * 3),
}

_IDX_RAW = ("{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte, optionally .gz "
            "(torchvision's raw layout)")
LAYOUTS = {
    "cifar10": "cifar-10-batches-py/data_batch_1..5 and test_batch (the CIFAR-10 python version)",
    "cifar100": "cifar-100-python/train and test (the CIFAR-100 python version)",
    "svhn": "train_32x32.mat and test_32x32.mat (the SVHN cropped-digits format)",
    "cinic10": "train/<class>/*.png and test/<class>/*.png (the CINIC-10 layout)",
    "imagenet": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders)",
    "mnist": f"MNIST/raw/{_IDX_RAW}",
    "fashion-mnist": f"FashionMNIST/raw/{_IDX_RAW}",
    "folder": "train/<class>/* and test/<class>/* image files (optionally val/<class>/*), "
              "the same class folders in each",
}


class DataError(ValueError):
    """A dataset is missing, incomplete or malformed; the message says what was expected where."""


@dataclass(frozen=True)
class FolderTree:
    """The class folders of a folder dataset, listed and checked without reading an image.

    Attributes:
        classes: the training split's class folder names, sorted: class ``i`` is ``classes[i]``.
        splits: (role, folder, class folder names) of ``train``, ``test`` and, for ``folder``
            trees that have one, ``valid`` (the ``val/`` folder).
    """

    classes: tuple[str, ...]
    splits: tuple[tuple[str, Path, tuple[str, ...]], ...]


def data_root(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """Return the folder of a dataset's files, or raise :class:`DataError` saying what it must hold.

    Args:
        name: a dataset of :data:`DATASETS` that is read from files.
        data_dir: the folder given (None: not given).
    """
    if data_dir is None:
        raise DataError(f"{name}: no data_dir given; it must hold {LAYOUTS[name]}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{name}: {root} is not a folder; expected it to hold {LAYOUTS[name]}")
    return root


def _subfolders(folder: Path) -> tuple[str, ...]:
    # Hidden folders (.ipynb_checkpoints, .git) are not classes.
    return tuple(sorted(entry.name for entry in os.scandir(folder)
                        if entry.is_dir() and not entry.name.startswith(".")))


def class_folders(name: str, root: Path) -> FolderTree:
    """List and check the class folders of a ``cinic10``, ``imagenet`` or ``folder`` tree.

    ``cinic10`` and ``imagenet`` may lack classes in their test folder (a subset); ``folder``
    needs at least two classes, each in every split (``val/`` is optional). Class folder names
    are sorted as Python sorts strings (by code point); hidden folders are skipped.

    Args:
        name: one of :data:`FOLDER_DATASETS`.
        root: the tree's folder.
    """
    test_dir = "val" if name == "imagenet" else "test"
    roles = [("train", root / "train"), ("test", root / test_dir)]
    missing = [folder.name for _, folder in roles if not folder.is_dir()]
    if missing:
        raise DataError(f"{name}: {root} holds no {LAYOUTS[name]}; missing folder {', '.join(missing)}")
    if name == "folder" and (root / "val").is_dir():
        roles.append(("valid", root / "val"))
    splits = tuple((role, folder, _subfolders(folder)) for role, folder in roles)
    classes = splits[0][2]
    if not classes:
        raise DataError(f"{name}: {splits[0][1]} holds no class folders; expected {LAYOUTS[name]}")
    if name == "folder" and len(classes) < 2:
        raise DataError(f"folder: {splits[0][1]} holds one class folder ({classes[0]!r}); a classifier needs "
                        "at least two")
    for _, folder, found in splits[1:]:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{name}: {folder} has class folders missing from train: {', '.join(unknown[:5])}")
        absent = [c for c in classes if c not in found]
        if name == "folder" and absent:
            raise DataError(f"folder: {folder} lacks the class folder(s) {', '.join(map(repr, absent[:5]))}"
                            f"{' ...' if len(absent) > 5 else ''} of train; every class needs test images")
    return FolderTree(classes, splits)


def n_classes_of(name: str, data_dir: str | os.PathLike[str] | None = None) -> int:
    """Return the number of classes of a dataset.

    Folder datasets (``cinic10``, ``imagenet``) get their actual count from their folders when
    loaded; this is the count of the full dataset. A ``folder`` dataset's count is that of its
    class folders, read from ``data_dir``.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: the dataset's folder (needed by ``folder`` only).
    """
    name = check_name(name)
    if name == "folder":
        return len(class_folders(name, data_root(name, data_dir)).classes)
    return N_CLASSES[name]


def class_names(name: str, data_dir: str | os.PathLike[str] | None = None) -> tuple[str, ...] | None:
    """Return a dataset's class names in label order, or None where optnas does not know them.

    Published names for digits, mnist, fashion-mnist, svhn and cifar10; the class folders of
    ``data_dir`` for cinic10, imagenet (their wnids) and folder; None for cifar100, and for
    cinic10 and imagenet without ``data_dir``.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: the dataset's folder (needed by ``folder``).
    """
    name = check_name(name)
    if name == "folder" or (name in FOLDER_DATASETS and data_dir is not None):
        return class_folders(name, data_root(name, data_dir)).classes
    return CLASS_NAMES.get(name)


def check_classes(name: str, data_dir: str | os.PathLike[str] | None, recorded: Sequence[str] | None) -> None:
    """Refuse a dataset whose classes are no longer those a search recorded (a ``folder`` tree edited since).

    Args:
        name: the dataset.
        data_dir: its folder.
        recorded: the class names the search recorded, in label order (None: nothing to check).
    """
    if recorded is None:
        return
    found = class_names(name, data_dir)
    if found is not None and list(found) != list(recorded):
        added = [c for c in found if c not in recorded]
        removed = [c for c in recorded if c not in found]
        change = "; ".join(filter(None, (added and f"new {', '.join(map(repr, added[:5]))}",
                                         removed and f"gone {', '.join(map(repr, removed[:5]))}"))) or "reordered"
        raise DataError(f"{name}: the classes of {data_dir} are not the {len(recorded)} the search recorded "
                        f"({change}); restore them or search again")


def recorded_classes(
    source: Mapping[str, Any], name: str, data_dir: str | os.PathLike[str] | None
) -> list[str] | None:
    """Return the class names a search recorded for a chosen network, checked against the data at hand.

    Where ``name`` is the search's dataset, its classes at ``data_dir`` must still be the
    recorded ones (:func:`check_classes`).

    Args:
        source: the chosen network's ``source.json`` (``classes`` and ``config`` as ``optnas select`` wrote them).
        name: the dataset the network is trained or checked on now.
        data_dir: its folder.
    """
    recorded = source.get("classes")
    if source.get("config", {}).get("dataset") == name:
        check_classes(name, data_dir, recorded)
    return None if recorded is None else list(recorded)


def mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the published per-channel (mean, std) of a dataset's images in [0, 1].

    Args:
        name: a dataset of :data:`DATASETS` other than ``digits`` and ``folder`` (whose are
            computed on load).
    """
    return MEAN_STD[check_name(name)]


def check_name(name: str) -> str:
    """Return a dataset's name in lower case, or raise :class:`DataError` naming the choices.

    Args:
        name: the name given.
    """
    key = str(name).lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key
