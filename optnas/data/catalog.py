"""The datasets optnas reads: names, class counts, published statistics and file layouts.

Plain tables, no torch: the command line's option checks and help text read them.
"""

from __future__ import annotations

DATASETS = ("digits", "cifar10", "cifar100", "svhn", "cinic10", "imagenet")

N_CLASSES = {
    "digits": 10,
    "cifar10": 10,
    "cifar100": 100,
    "svhn": 10,
    "cinic10": 10,
    "imagenet": 1000,
}

# Per-channel statistics of the training images scaled to [0, 1], as published with each
# dataset; digits' are computed at load time from its fixed train split.
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cinic10": ((0.4789, 0.4723, 0.4305), (0.2421, 0.2383, 0.2587)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

LAYOUTS = {
    "cifar10": "cifar-10-batches-py/data_batch_1..5 and test_batch (the CIFAR-10 python version)",
    "cifar100": "cifar-100-python/train and test (the CIFAR-100 python version)",
    "svhn": "train_32x32.mat and test_32x32.mat (the SVHN cropped-digits format)",
    "cinic10": "train/<class>/*.png and test/<class>/*.png (the CINIC-10 layout)",
    "imagenet": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders)",
}


class DataError(ValueError):
    """A dataset is missing, incomplete or malformed; the message says what was expected where."""


def n_classes_of(name: str) -> int:
    """Return the number of classes of a dataset.

    Folder datasets (``cinic10``, ``imagenet``) get their actual count from their folders when
    loaded; this is the count of the full dataset.

    Args:
        name: one of :data:`DATASETS`.
    """
    return N_CLASSES[check_name(name)]


def mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the published per-channel (mean, std) of a dataset's images in [0, 1].

    Args:
        name: a dataset of :data:`DATASETS` other than ``digits`` (whose are computed on load).
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
