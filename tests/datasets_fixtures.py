"""Writers of tiny datasets in the real on-disk formats, for tests that load data from files.

Images are learnable: each class has its own mean colour plus noise, and every class appears
in every split as soon as there are at least as many images as classes.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def class_images(
    labels: np.ndarray, n_classes: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Return uint8 N×size×size×3 images whose colour depends on their class.

    Args:
        labels: class of every image.
        n_classes: number of classes (spreads the class colours).
        size: side of the square images.
        rng: source of the pixel noise.
    """
    hue = (np.asarray(labels)[:, None] + 0.5) / n_classes
    colour = 255 * np.concatenate([hue, 1 - hue, (3 * hue) % 1], axis=1)
    noise = rng.normal(0, 30, size=(len(labels), size, size, 3))
    return np.clip(colour[:, None, None, :] + noise, 0, 255).astype(np.uint8)


def _labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % n_classes)


def _cifar_rows(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    # CIFAR rows are the R, G and B planes of a 32×32 image, each row-major.
    return class_images(labels, n_classes, 32, rng).transpose(0, 3, 1, 2).reshape(len(labels), -1)


def _dump(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def make_cifar10(
    root: str | os.PathLike[str], n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """Write a CIFAR-10 python-version tree ``root/cifar-10-batches-py`` and return that folder.

    The training images are spread over ``data_batch_1..5`` as in the real files.

    Args:
        root: parent folder (created if needed).
        n_train: training images in total.
        n_test: images in ``test_batch``.
        seed: seeds labels and pixels.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = _labels(n_train, 10, rng)
    for i, part in enumerate(np.array_split(train_labels, 5), start=1):
        _dump(
            folder / f"data_batch_{i}",
            {
                b"batch_label": f"training batch {i} of 5".encode(),
                b"labels": part.tolist(),
                b"data": _cifar_rows(part, 10, rng),
                b"filenames": [f"img_{i}_{j}.png".encode() for j in range(len(part))],
            },
        )
    test_labels = _labels(n_test, 10, rng)
    _dump(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": test_labels.tolist(),
            b"data": _cifar_rows(test_labels, 10, rng),
            b"filenames": [f"test_{j}.png".encode() for j in range(n_test)],
        },
    )
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(
        folder / "batches.meta",
        {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072},
    )
    return folder


def make_cifar100(
    root: str | os.PathLike[str], n_train: int = 200, n_test: int = 100, seed: int = 0
) -> Path:
    """Write a CIFAR-100 python-version tree ``root/cifar-100-python`` and return that folder.

    Args:
        root: parent folder (created if needed).
        n_train: images in ``train``.
        n_test: images in ``test``.
        seed: seeds labels and pixels.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = _labels(n, 100, rng)
        _dump(
            folder / split,
            {
                b"filenames": [f"{split}_{j}.png".encode() for j in range(n)],
                b"batch_label": f"{split}ing batch 1 of 1".encode(),
                b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist(),
                b"data": _cifar_rows(fine, 100, rng),
            },
        )
    _dump(
        folder / "meta",
        {
            b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
        },
    )
    return folder


def make_svhn(
    root: str | os.PathLike[str], n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """Write SVHN cropped digits ``root/{train,test}_32x32.mat`` and return root.

    As in the real files, ``X`` is uint8 32×32×3×N and ``y`` is N×1 with the digit 0 labelled 10.

    Args:
        root: folder (created if needed).
        n_train: images in the training file.
        n_test: images in the test file.
        seed: seeds labels and pixels.
    """
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = _labels(n, 10, rng)
        x = class_images(labels, 10, 32, rng).transpose(1, 2, 3, 0)
        y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    return folder


def make_imagefolder(
    root: str | os.PathLike[str],
    classes: Sequence[str] = ("cat", "dog", "frog"),
    n_per_class: int = 4,
    splits: Sequence[str] = ("train", "test"),
    size: int = 16,
    ext: str = ".png",
    seed: int = 0,
) -> Path:
    """Write image files ``root/<split>/<class>/<i><ext>`` (ImageFolder layout) and return root.

    Args:
        root: folder (created if needed).
        classes: class folder names (ImageNet uses wnids such as ``n01440764``).
        n_per_class: images per class and split.
        splits: split folders to write, e.g. ``("train", "val")`` for ImageNet.
        size: side of the square images.
        ext: file extension; ``.png`` and ``.JPEG``/``.jpg`` are written in their formats.
        seed: seeds the pixels.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(root)
    image_format = "JPEG" if ext.lower() in (".jpg", ".jpeg") else None
    for split in splits:
        for label, name in enumerate(classes):
            class_dir = folder / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            pixels = class_images(np.full(n_per_class, label), len(classes), size, rng)
            for i, image in enumerate(pixels):
                Image.fromarray(image).save(class_dir / f"{i}{ext}", format=image_format)
    return folder


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (magic 0x0000080N, N big-endian sizes, the bytes); gzip it
    when ``path`` ends in ``.gz``; return the path.

    Args:
        path: the file.
        array: uint8 array of 1 to 4 dimensions.
    """
    import gzip
    import struct

    array = np.ascontiguousarray(array, dtype=np.uint8)
    content = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def make_idx(
    root: str | os.PathLike[str],
    name: str = "fashion-mnist",
    n_train: int = 40,
    n_test: int = 20,
    gz: bool = False,
    seed: int = 0,
) -> Path:
    """Write MNIST / Fashion-MNIST in torchvision's raw layout ``root/<MNIST|FashionMNIST>/raw/*-ubyte``
    (grey 28×28 images, labels 0..9) and return the raw folder.

    Args:
        root: parent folder (created if needed).
        name: ``mnist`` or ``fashion-mnist``.
        n_train: images in the ``train-*`` files.
        n_test: images in the ``t10k-*`` files.
        gz: gzip the four files (``*.gz``), as they are published.
        seed: seeds labels and pixels.
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) / {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name] / "raw"
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = _labels(n, 10, rng)
        grey = class_images(labels, 10, 28, rng)[..., 0]
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", grey)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8))
    return raw


# Class folders a user might have: spaces, unicode, dots, digits; sorted by code point they are
# 01, a.b, cat, x-y, zeta 7, Ärger, Ünïcode class.
ODD_CLASSES = ("Ünïcode class", "a.b", "zeta 7", "cat", "01", "x-y", "Ärger")


def make_own_folder(
    root: str | os.PathLike[str],
    classes: Sequence[str] = ODD_CLASSES,
    n_train: int = 6,
    n_test: int = 2,
    n_val: int = 0,
    seed: int = 0,
) -> Path:
    """Write a ``--dataset folder`` tree ``root/{train,test[,val]}/<class>/<i>.<ext>`` of tiny images
    of mixed sizes, modes and formats (RGB, grey, RGBA, palette and 16-bit grey PNG, RGB JPEG);
    return root.

    Each class has its own colour, so that a network can learn them.

    Args:
        root: folder (created if needed).
        classes: class folder names.
        n_train: images per class in ``train``.
        n_test: images per class in ``test``.
        n_val: images per class in ``val`` (0: no ``val`` folder).
        seed: seeds the pixels.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(root)
    kinds = ("RGB", "L", "RGBA", "P", "I;16", "JPEG")
    for split, n in (("train", n_train), ("test", n_test), ("val", n_val)):
        for label, name in enumerate(classes):
            if not n:
                continue
            class_dir = folder / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                width, height = 9 + 5 * (i % 4), 12 + 3 * (i % 3)
                pixels = class_images(np.array([label]), len(classes), max(width, height), rng)[0][:height, :width]
                kind = kinds[(i + label) % len(kinds)]
                image = Image.fromarray(pixels)
                if kind == "I;16":
                    image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
                elif kind != "JPEG":
                    image = image.convert(kind)
                image.save(class_dir / f"{i}.{'jpg' if kind == 'JPEG' else 'png'}")
    return folder
