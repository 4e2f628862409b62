"""Image classification datasets, read from files the user already has: nothing is downloaded.

:func:`load_dataset` returns a :class:`DataSplits` of three :class:`ImageSet` objects. The
validation split is always held out of the *training* files, so that selecting architectures
never looks at the test split.

Expected layouts (``data_dir`` is the folder passed to :func:`load_dataset`):

* ``digits``: nothing; scikit-learn ships its 1797 8×8 handwritten digits.
* ``cifar10``: ``data_dir/cifar-10-batches-py/{data_batch_1..5, test_batch}`` (the CIFAR-10
  python version); ``data_dir`` may also be the ``cifar-10-batches-py`` folder itself.
* ``cifar100``: ``data_dir/cifar-100-python/{train, test}`` (the CIFAR-100 python version);
  ``data_dir`` may also be the ``cifar-100-python`` folder itself.
* ``svhn``: ``data_dir/{train_32x32.mat, test_32x32.mat}`` (cropped digits; ``extra`` is not used).
* ``cinic10``: ``data_dir/{train,test}/<class>/*.png``; CINIC-10's ``valid/`` folder is ignored.
* ``imagenet``: ``data_dir/train/<wnid>/*.JPEG`` and ``data_dir/val/<wnid>/*.JPEG`` (the
  validation images sorted into class folders); ``val`` serves as the test split.
* ``mnist`` / ``fashion-mnist``: torchvision's raw layout,
  ``data_dir/MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
  t10k-labels-idx1-ubyte}`` (``FashionMNIST/raw/`` for Fashion-MNIST), each optionally gzipped
  (``.gz``); ``data_dir`` may also be the ``MNIST`` (``FashionMNIST``) or the ``raw`` folder itself.
  The grey 28×28 images are repeated on three channels.
* ``folder``: your own images, ``data_dir/train/<class>/*`` and ``data_dir/test/<class>/*``
  (any image files Pillow reads: png, jpg, bmp, tif, webp, ...; any size and mode, grey
  repeated on three channels), with the same class folders in each; the class names are the
  folder names, sorted. An optional ``data_dir/val/<class>/*`` is the validation split instead
  of images held out of ``train``. Every image's header is read on load, so an unreadable file
  is refused before a search starts; mean and std are computed from (up to 512 of) the
  training images.
"""

from __future__ import annotations

import abc
import gzip
import os
import pickle
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from optnas.data.catalog import (
    CLASS_NAMES,
    LAYOUTS,
    MEAN_STD,
    N_CLASSES,
    DataError,
    check_name,
    class_folders,
    data_root,
)

# The digits test split must never change, whatever seed picks the validation split.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 0
_DIGITS_VLD_SIZE = 360
_MAX_VLD_SIZE = 10000

# Images prepared at once by ``ImageSet.tensors``; bounds the float32 working memory.
_CHUNK = 1024
# Eval-time resize factor before the centre crop, as in the usual ImageNet pipeline.
_CROP_RATIO = 0.875
# Training images of a folder dataset whose pixels give its mean and std: enough for three
# decimals on photographs, a few seconds to decode.
_STATS_IMAGES = 512
# torchvision's raw MNIST / Fashion-MNIST files and the folder holding them under data_dir.
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


class ImageSet(abc.ABC):
    """One split of a labelled image dataset.

    Images come out as normalized float32 N×3×R×R tensors for any requested resolution R,
    with int64 labels.

    Args:
        n_classes: number of classes of the dataset (labels lie in ``[0, n_classes)``).
        mean: per-channel mean of images scaled to [0, 1], subtracted when normalizing.
        std: per-channel standard deviation, divided by when normalizing.
        cache_size: how many (resolution, device) results of :meth:`tensors` are kept; the
            least recently used one is dropped first.
    """

    def __init__(
        self,
        n_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        cache_size: int = 4,
    ) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std need one value per channel (3)")
        self._n_classes = int(n_classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = (
            OrderedDict()
        )

    @property
    def n_classes(self) -> int:
        """Number of classes of the dataset."""
        return self._n_classes

    @property
    @abc.abstractmethod
    def labels(self) -> torch.Tensor:
        """Class index of every image, as an int64 tensor."""

    def __len__(self) -> int:
        return len(self.labels)

    @abc.abstractmethod
    def batches(
        self,
        batch_size: int,
        resolution: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate once over the split in batches of (images, labels).

        Args:
            batch_size: images per batch (the last one may be smaller).
            resolution: side of the square images produced.
            shuffle: visit the images in a random order.
            augment: apply the split's training augmentation.
            generator: CPU random generator for the order and the augmentation; the global
                one if ``None``.
            device: where the tensors are placed.
            drop_last: skip the last batch when it is smaller than ``batch_size``.
        """

    @abc.abstractmethod
    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageSet:
        """Return the images at ``indices``, in that order, as a new split.

        Args:
            indices: positions of the images to keep.
        """

    def tensors(
        self, resolution: int, device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the whole split as (images, labels), prepared as :meth:`batches` without
        augmentation does it.

        The result is cached per (resolution, device), so evaluating many candidates on the
        same split prepares it once; do not modify the returned tensors in place.

        Args:
            resolution: side of the square images produced.
            device: where the tensors are placed.
        """
        device = torch.device(device)
        key = (resolution, str(device))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        images = torch.empty((len(self), 3, resolution, resolution), device=device)
        labels = torch.empty(len(self), dtype=torch.long, device=device)
        start = 0
        for x, y in self.batches(_CHUNK, resolution, device=device):
            images[start : start + len(y)] = x
            labels[start : start + len(y)] = y
            start += len(y)
        self._cache[key] = (images, labels)
        while len(self._cache) > max(self.cache_size, 0):
            self._cache.popitem(last=False)
        return images, labels

    def clear_cache(self) -> None:
        """Free the tensors kept by :meth:`tensors`."""
        self._cache.clear()

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


class TensorImageSet(ImageSet):
    """An image split held in memory, resized and augmented a whole batch at a time.

    Args:
        images: N×3×H×W tensor, uint8 in 0..255 or floating point in [0, 1].
        labels: the N class indices.
        n_classes: number of classes of the dataset.
        mean: per-channel mean of images scaled to [0, 1].
        std: per-channel standard deviation of images scaled to [0, 1].
        flip: whether augmentation also flips images horizontally (off where mirroring
            changes the meaning, as for digits).
        shift: the largest random shift of augmentation, as a fraction of the side.
        cache_size: how many results of :meth:`tensors` are kept.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        n_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        flip: bool = True,
        shift: float = 1 / 8,
        cache_size: int = 4,
    ) -> None:
        super().__init__(n_classes, mean, std, cache_size)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be N×3×H×W, got shape {tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self._images = images
        self._labels = torch.as_tensor(labels, dtype=torch.long)
        self.flip = flip
        self.shift = shift

    @property
    def labels(self) -> torch.Tensor:
        """Class index of every image, as an int64 tensor."""
        return self._labels

    def batches(
        self,
        batch_size: int,
        resolution: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate once over the split in batches of (images, labels).

        Images are resized bilinearly (antialiased when shrinking); augmentation is a random
        crop with ``resolution * shift`` zero padding, plus a horizontal flip if ``flip``.

        Args:
            batch_size: images per batch (the last one may be smaller).
            resolution: side of the square images produced.
            shuffle: visit the images in a random order.
            augment: apply random crop (and flip) augmentation.
            generator: CPU random generator for the order and the augmentation; the global
                one if ``None``.
            device: where the tensors are placed.
            drop_last: skip the last batch when it is smaller than ``batch_size``.
        """
        _check_positive(batch_size=batch_size, resolution=resolution)
        order = torch.randperm(len(self), generator=generator) if shuffle else None
        return self._iterate(
            batch_size, resolution, order, augment, generator, torch.device(device), drop_last
        )

    def _iterate(
        self,
        batch_size: int,
        resolution: int,
        order: torch.Tensor | None,
        augment: bool,
        generator: torch.Generator | None,
        device: torch.device,
        drop_last: bool,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            end = start + batch_size
            index = slice(start, end) if order is None else order[start:end]
            # Move the compact storage (often uint8), convert on the device.
            x = self._images[index].to(device, non_blocking=True)
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            x = _resize(x, resolution)
            if augment:
                x = _random_crop_flip(x, int(resolution * self.shift), self.flip, generator)
            yield self._normalize(x), self._labels[index].to(device)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> TensorImageSet:
        """Return the images at ``indices``, in that order, as a new split.

        Args:
            indices: positions of the images to keep.
        """
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return TensorImageSet(
            self._images[index],
            self._labels[index],
            self.n_classes,
            self.mean,
            self.std,
            flip=self.flip,
            shift=self.shift,
            cache_size=self.cache_size,
        )


class FolderImageSet(ImageSet):
    """An image split of files in class folders, decoded by a ``DataLoader`` on each pass.

    Training augmentation is ``RandomResizedCrop`` and a horizontal flip; evaluation resizes
    to ``int(resolution / 0.875)`` and centre-crops. Each image's augmentation is seeded from
    ``generator``, so a pass is reproducible whatever ``n_workers``.

    Args:
        samples: (path, class index) of every image.
        n_classes: number of classes of the dataset.
        mean: per-channel mean of images scaled to [0, 1].
        std: per-channel standard deviation of images scaled to [0, 1].
        n_workers: processes decoding images (0 decodes in the calling process).
        cache_size: how many results of :meth:`tensors` are kept; these materialize the
            whole split, so use :meth:`tensors` only on small splits.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        n_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        n_workers: int = 0,
        cache_size: int = 4,
    ) -> None:
        super().__init__(n_classes, mean, std, cache_size)
        self._paths = [str(path) for path, _ in samples]
        self._labels = torch.tensor([label for _, label in samples], dtype=torch.long)
        self.n_workers = n_workers

    @property
    def labels(self) -> torch.Tensor:
        """Class index of every image, as an int64 tensor."""
        return self._labels

    @property
    def paths(self) -> list[str]:
        """Path of every image file."""
        return list(self._paths)

    def batches(
        self,
        batch_size: int,
        resolution: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate once over the split in batches of (images, labels).

        Args:
            batch_size: images per batch (the last one may be smaller).
            resolution: side of the square images produced.
            shuffle: visit the images in a random order.
            augment: apply RandomResizedCrop and flip instead of resize and centre crop.
            generator: CPU random generator for the order and the augmentation; the global
                one if ``None``.
            device: where the tensors are placed.
            drop_last: skip the last batch when it is smaller than ``batch_size``.
        """
        from torch.utils.data import DataLoader

        _check_positive(batch_size=batch_size, resolution=resolution)
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if augment:
            seeds = torch.randint(2**62, (n,), generator=generator).tolist()
        else:
            seeds = [None] * n
        device = torch.device(device)
        transform = _folder_transform(resolution, augment, self.mean, self.std)
        loader = DataLoader(
            _FolderDataset(self._paths, self._labels, transform),
            batch_size=batch_size,
            # Each key carries its own augmentation seed, so workers need no shared RNG.
            sampler=list(zip(order.tolist(), seeds)),
            num_workers=self.n_workers,
            pin_memory=device.type == "cuda",
            drop_last=drop_last,
        )
        return ((x.to(device, non_blocking=True), y.to(device)) for x, y in loader)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> FolderImageSet:
        """Return the images at ``indices``, in that order, as a new split.

        Args:
            indices: positions of the images to keep.
        """
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        labels = self._labels[torch.from_numpy(index)].tolist()
        return FolderImageSet(
            [(self._paths[i], label) for i, label in zip(index.tolist(), labels)],
            self.n_classes,
            self.mean,
            self.std,
            n_workers=self.n_workers,
            cache_size=self.cache_size,
        )


class _FolderDataset:
    """Map-style dataset over image files; keys are (index, augmentation seed or None)."""

    def __init__(self, paths: list[str], labels: torch.Tensor, transform: Any) -> None:
        self.paths = paths
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, int]:
        index, seed = key
        image = read_rgb(self.paths[index])
        if seed is None:
            return self.transform(image), int(self.labels[index])
        # torchvision transforms draw from the global CPU RNG: fork it so that the caller's
        # stays untouched, and seed only it (torch.manual_seed would also queue CUDA seeding).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.transform(image), int(self.labels[index])


@dataclass
class DataSplits:
    """The three splits of a dataset.

    Attributes:
        name: dataset name.
        train: images to train on (the training files minus ``valid``).
        valid: images held out of the training files, to select architectures on.
        test: the dataset's test files, only for final reporting.
        n_classes: number of classes.
        classes: the class names in label order (the class folders of folder datasets), or
            None where they are not known (cifar100).
    """

    name: str
    train: ImageSet
    valid: ImageSet
    test: ImageSet
    n_classes: int
    classes: tuple[str, ...] | None = None


def load_dataset(
    name: str = "digits",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    vld_size: int | None = None,
    seed: int = 0,
    n_workers: int = 0,
) -> DataSplits:
    """Load a dataset from disk and split off a validation set from its training files.

    The validation split is ``vld_size`` training images, stratified by class and chosen
    from ``seed``; they are removed from the training split. The test split is the dataset's
    own (for digits, a fixed stratified 20% that no seed changes). A ``folder`` tree with a
    ``val/`` folder takes its validation split from there instead (``vld_size`` of its images,
    stratified, or all of them), and trains on every training image.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: folder holding the dataset files (ignored for ``digits``); see the module
            docstring for the layouts.
        vld_size: images in the validation split; by default 360 for digits, the whole ``val/``
            folder of a ``folder`` tree that has one, otherwise ``min(10000, 10% of the training
            files)``.
        seed: picks the validation images.
        n_workers: image-decoding processes for folder datasets (cinic10, imagenet, folder).

    Raises:
        DataError: the name is unknown, the files are missing or malformed, or ``vld_size``
            does not leave any training image.
    """
    name = check_name(name)
    valid = None
    classes = CLASS_NAMES.get(name)
    if name == "digits":
        pool, test = _load_digits()
    else:
        root = data_root(name, data_dir)
        if name in ("cifar10", "cifar100"):
            pool, test = _load_cifar(name, root)
        elif name == "svhn":
            pool, test = _load_svhn(root)
        elif name in _IDX_FOLDERS:
            pool, test = _load_idx(name, root)
        else:
            pool, test, valid, classes = _load_folders(name, root, n_workers)

    if valid is not None:
        if vld_size is None or vld_size == len(valid):
            return DataSplits(name, pool, valid, test, pool.n_classes, classes)
        if not 1 <= vld_size < len(valid):
            raise DataError(f"{name}: vld_size={vld_size} must be between 1 and {len(valid)}, as "
                            f"{data_dir}/val holds {len(valid)} images")
        _, held = stratified_holdout(valid.labels.numpy(), vld_size, seed)
        return DataSplits(name, pool, valid.subset(held), test, pool.n_classes, classes)
    n_pool = len(pool)
    if vld_size is None:
        if name == "digits":
            vld_size = _DIGITS_VLD_SIZE
        else:
            vld_size = max(1, min(_MAX_VLD_SIZE, n_pool // 10))
    if not 1 <= vld_size < n_pool:
        raise DataError(
            f"{name}: vld_size={vld_size} must be between 1 and {n_pool - 1}, "
            f"as the training files hold {n_pool} images"
        )
    keep, held = stratified_holdout(pool.labels.numpy(), vld_size, seed)
    return DataSplits(name, pool.subset(keep), pool.subset(held), test, pool.n_classes, classes)


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ValueError(f"{key} must be positive, got {value}")


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    if height == width == resolution:
        return x
    shrink = resolution < height or resolution < width
    return F.interpolate(
        x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=shrink
    )


def _random_crop_flip(
    x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None
) -> torch.Tensor:
    n, channels, height, width = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        top = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
        left = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
        rows = (top + torch.arange(height)).to(x.device)
        cols = (left + torch.arange(width)).to(x.device)
        # One gather for the whole batch: image i takes rows[i] × cols[i] of its padded copy.
        x = padded[
            torch.arange(n, device=x.device).view(n, 1, 1, 1),
            torch.arange(channels, device=x.device).view(1, channels, 1, 1),
            rows.view(n, 1, height, 1),
            cols.view(n, 1, 1, width),
        ]
    if flip:
        mirrored = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirrored.view(n, 1, 1, 1), x.flip(3), x)
    return x


def _folder_transform(
    resolution: int, augment: bool, mean: Sequence[float], std: Sequence[float]
) -> Any:
    from torchvision import transforms

    if augment:
        geometry = [transforms.RandomResizedCrop(resolution), transforms.RandomHorizontalFlip()]
    else:
        geometry = [
            transforms.Resize(int(resolution / _CROP_RATIO)),
            transforms.CenterCrop(resolution),
        ]
    return transforms.Compose(
        [*geometry, transforms.ToTensor(), transforms.Normalize(mean, std)]
    )


def stratified_holdout(
    labels: np.ndarray, n_held: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (kept, held), ``n_held`` held with classes in proportion.

    Each class gets the floor of its share, and the remaining images go to the classes with
    the largest fractional shares (ties broken at random). Both outputs are sorted.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    permutation = rng.permutation(n)
    # Grouped by class, in random order within each class.
    order = permutation[np.argsort(labels[permutation], kind="stable")]
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    share = n_held * counts / n
    quota = np.floor(share).astype(np.int64)
    missing = n_held - int(quota.sum())
    if missing:
        ranking = np.lexsort((rng.random(len(counts)), -(share - quota)))
        quota[ranking[:missing]] += 1
    rank_in_class = np.arange(n) - np.repeat(starts, counts)
    held = rank_in_class < np.repeat(quota, counts)
    return np.sort(order[~held]), np.sort(order[held])


def _load_digits() -> tuple[TensorImageSet, TensorImageSet]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    gray = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    n_test = round(_DIGITS_TEST_FRACTION * len(labels))
    pool, test = stratified_holdout(labels.numpy(), n_test, _DIGITS_SPLIT_SEED)
    mean = float(gray[pool].mean())
    std = float(gray[pool].std())
    images = gray.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    # A digit fills its 8x8 image: shifting it by one of its pixels (an eighth, CIFAR's usual
    # 4 of 32) pushes strokes out of the frame; half a pixel took the largest subnet from 76 % to
    # 90 % validation top1 in 6 epochs.
    full = TensorImageSet(images, labels, 10, (mean,) * 3, (std,) * 3, flip=False, shift=1 / 16)
    return full.subset(pool), full.subset(test)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, so a data file cannot run code."""

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_cifar(name: str, root: Path) -> tuple[TensorImageSet, TensorImageSet]:
    if name == "cifar10":
        folder_name, label_key = "cifar-10-batches-py", "labels"
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files = ["test_batch"]
    else:
        folder_name, label_key = "cifar-100-python", "fine_labels"
        train_files, test_files = ["train"], ["test"]
    folder = root / folder_name if (root / folder_name).is_dir() else root
    missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{name}: {root} holds no {LAYOUTS[name]}; missing {', '.join(missing)} in {folder}"
        )
    mean, std = MEAN_STD[name]
    splits = []
    for files in (train_files, test_files):
        parts = [_read_cifar_file(name, folder / f, label_key) for f in files]
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        splits.append(TensorImageSet(images, labels, N_CLASSES[name], mean, std))
    return splits[0], splits[1]


def _read_cifar_file(name: str, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    # A corrupt pickle can fail in many ways; all of them mean "not a CIFAR batch".
    except Exception as exc:
        raise DataError(f"{name}: {path} is not a CIFAR python batch ({exc})") from exc
    if not isinstance(entry, dict):
        raise DataError(f"{name}: {path} is not a CIFAR python batch (no dict inside)")
    # Files pickled by Python 3 keep bytes keys; the original Python 2 ones load as str.
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise DataError(
            f"{name}: {path} lacks the 'data' and '{label_key}' entries of a CIFAR batch"
        )
    data = np.asarray(entry["data"])
    labels = np.asarray(entry[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{name}: {path} 'data' should be uint8 N×3072, got {data.dtype} {data.shape}"
        )
    _check_labels(name, path, labels, len(data), N_CLASSES[name])
    return data.reshape(-1, 3, 32, 32), labels


def _load_svhn(root: Path) -> tuple[TensorImageSet, TensorImageSet]:
    paths = [root / "train_32x32.mat", root / "test_32x32.mat"]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"svhn: {root} holds no {LAYOUTS['svhn']}; missing {', '.join(missing)}")
    mean, std = MEAN_STD["svhn"]
    train, test = (TensorImageSet(*_read_svhn_file(p), 10, mean, std, flip=False) for p in paths)
    return train, test


def _read_svhn_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=("X", "y"))
    # scipy raises assorted errors on corrupt files; all of them mean "not an SVHN .mat".
    except Exception as exc:
        raise DataError(f"svhn: {path} is not a readable .mat file ({exc})") from exc
    if "X" not in mat or "y" not in mat:
        raise DataError(f"svhn: {path} lacks the 'X' and 'y' variables of SVHN")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"svhn: {path} 'X' should be uint8 32×32×3×N, got {x.dtype} {x.shape}")
    labels = y.astype(np.int64).reshape(-1)
    # SVHN labels the digit 0 as 10.
    labels[labels == 10] = 0
    _check_labels("svhn", path, labels, x.shape[3], 10)
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return torch.from_numpy(images), torch.from_numpy(labels)


def _check_labels(name: str, path: Path, labels: np.ndarray, n_images: int, n_classes: int) -> None:
    if len(labels) != n_images:
        raise DataError(f"{name}: {path} has {n_images} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(
            f"{name}: {path} has labels outside 0..{n_classes - 1} "
            f"(found {labels.min()}..{labels.max()})"
        )


def _load_folders(
    name: str, root: Path, n_workers: int
) -> tuple[FolderImageSet, FolderImageSet, FolderImageSet | None, tuple[str, ...]]:
    """Read a class-folder tree: (train, test, val or None, class names).

    A ``folder`` tree is checked in full here (every class has images in every split, every
    image's header reads) and gets its statistics from its training images; cinic10 and
    imagenet trees, often large and checked by their publishers, keep their published ones.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    tree = class_folders(name, root)
    class_to_idx = {c: i for i, c in enumerate(tree.classes)}
    listed = []
    for _, folder, folder_classes in tree.splits:
        samples = make_dataset(
            folder,
            {c: class_to_idx[c] for c in folder_classes},
            extensions=IMG_EXTENSIONS,
            allow_empty=True,
        )
        if not samples:
            raise DataError(
                f"{name}: {folder} holds no images ({', '.join(IMG_EXTENSIONS)}) in class folders"
            )
        if name == "folder":
            counted = {label for _, label in samples}
            empty = [c for c in folder_classes if class_to_idx[c] not in counted]
            if empty:
                raise DataError(f"folder: {folder} has no images ({', '.join(IMG_EXTENSIONS)}) in "
                                f"{', '.join(map(repr, empty[:5]))}{' ...' if len(empty) > 5 else ''}")
        listed.append(samples)
    if name == "folder":
        for samples in listed:
            _check_headers(path for path, _ in samples)
        mean, std = _mean_std([path for path, _ in listed[0]])
    else:
        mean, std = MEAN_STD[name]
    splits = [FolderImageSet(samples, len(tree.classes), mean, std, n_workers=n_workers) for samples in listed]
    return splits[0], splits[1], splits[2] if len(splits) > 2 else None, tree.classes


def read_rgb(path: str | os.PathLike[str]) -> Any:
    """Decode an image file into an 8-bit RGB ``PIL.Image`` (grey repeated on the three channels).

    16-bit grey images are scaled to 8 bits, which Pillow's own conversion would clip.

    Args:
        path: the file.

    Raises:
        DataError: the file cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):
                pixels = np.asarray(image, dtype=np.float64) / 257.0
                return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8)).convert("RGB")
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} cannot be read as an image ({exc})") from exc


def _check_headers(paths: Iterable[str]) -> None:
    """Open every file as an image (header only: fast), so that a broken one stops a search before it starts."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - Pillow has parsed the header once this exists
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise DataError(f"folder: {path} cannot be read as an image ({exc})") from exc


def _mean_std(paths: Sequence[str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of up to :data:`_STATS_IMAGES` images spread evenly over
    ``paths``, each image weighing the same whatever its size (deterministic: no seed involved)."""
    picked = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), _STATS_IMAGES)).round().astype(int))
    first = np.zeros(3)
    second = np.zeros(3)
    for index in picked:
        pixels = np.asarray(read_rgb(paths[index]), dtype=np.float64).reshape(-1, 3) / 255.0
        first += pixels.mean(axis=0)
        second += (pixels**2).mean(axis=0)
    mean = first / len(picked)
    # Images of one flat colour would give 0: keep a floor of one grey level.
    std = np.maximum(np.sqrt(np.maximum(second / len(picked) - mean**2, 0.0)), 1 / 255)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _load_idx(name: str, root: Path) -> tuple[TensorImageSet, TensorImageSet]:
    """Read MNIST / Fashion-MNIST from torchvision's raw IDX files (see the module docstring)."""
    files = _idx_files(name, root)
    mean, std = MEAN_STD[name]
    splits = []
    for split in ("train", "test"):
        images_file, labels_file = files[split]
        images = _read_idx(name, images_file, 3)
        labels = _read_idx(name, labels_file, 1).astype(np.int64)
        _check_labels(name, labels_file, labels, len(images), N_CLASSES[name])
        grey = torch.from_numpy(images).unsqueeze(1).expand(-1, 3, -1, -1)
        # The usual augmentation of these 28x28 images pads by 2 pixels; mirrored digits are
        # other glyphs, mirrored clothes are the same garment.
        splits.append(TensorImageSet(grey, torch.from_numpy(labels), N_CLASSES[name], mean, std,
                                     flip=name == "fashion-mnist", shift=1 / 16))
    return splits[0], splits[1]


def _idx_files(name: str, root: Path) -> dict[str, tuple[Path, Path]]:
    """Find the folder holding the four IDX files (plain or ``.gz``) under ``root``."""
    base = _IDX_FOLDERS[name]
    candidates = [root / base / "raw", root / "raw", root]
    for folder in candidates:
        found = {split: tuple(_idx_path(folder, stem) for stem in stems) for split, stems in _IDX_FILES.items()}
        if all(path is not None for pair in found.values() for path in pair):
            return found  # type: ignore[return-value]
    # Name what is missing where the files were most likely put.
    folder = next((c for c in candidates if c.is_dir() and c != root), root)
    missing = [stem for stems in _IDX_FILES.values() for stem in stems if _idx_path(folder, stem) is None]
    raise DataError(f"{name}: {root} holds no {LAYOUTS[name]}; missing {', '.join(missing)} in {folder}")


def _idx_path(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _read_idx(name: str, path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (magic 0x0000080N) with ``ndim`` dimensions, checking its size."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    # gzip reports corruption as OSError, EOFError or zlib.error.
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: {path} cannot be read ({exc})") from exc
    header = 4 + 4 * ndim
    magic = raw[:4]
    if magic != bytes((0, 0, 0x08, ndim)) or len(raw) < header:
        raise DataError(f"{name}: {path} is not an IDX file of bytes with {ndim} dimension(s) "
                        f"(magic {magic.hex() or 'missing'}, expected 0000080{ndim})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(f"{name}: {path} holds {len(raw) - header} bytes of data but its header announces "
                        f"{'x'.join(map(str, shape))} = {size} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()
