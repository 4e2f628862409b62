"""Write a class-stratified subset of MNIST / Fashion-MNIST in torchvision's raw layout.

``optnas supernet train`` and ``optnas search`` read every training image of a dataset; on a
small CPU a benchmark may want fewer. This helper reads the four IDX files under DIR (any
layout ``--dataset mnist`` / ``fashion-mnist`` accepts), keeps ``--train-images`` training images
(and ``--test-images`` test images, all by default) with the classes in proportion, chosen by
``--seed``, and writes them gzipped to ``OUT/<MNIST|FashionMNIST>/raw/``, in their original
order. ``--data OUT`` then reads the subset like the full dataset.

    python benchmarks/subset_idx.py DIR OUT --train-images 6000 [--test-images N] [--dataset fashion-mnist]
        [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optnas.data.datasets import _IDX_FILES, _IDX_FOLDERS, _idx_files, _read_idx, stratified_holdout


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array of unsigned bytes as a gzipped IDX file (magic ``0000080N``, big-endian sizes).

    Args:
        path: the file to write (its folder must exist).
        array: uint8 values, 1 to 3 dimensions.
    """
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    # mtime 0: the same subset gives the same bytes.
    with gzip.GzipFile(path, "wb", mtime=0) as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_subset(data: Path, out: Path, *, dataset: str, train_images: int, test_images: int | None,
                 seed: int) -> dict[str, int]:
    """Write the subset and return the images kept per split.

    Args:
        data: a folder holding the dataset's raw IDX files.
        out: where ``<MNIST|FashionMNIST>/raw/`` is written.
        dataset: ``mnist`` or ``fashion-mnist``.
        train_images: training images kept.
        test_images: test images kept (None: all).
        seed: picks the images.
    """
    files = _idx_files(dataset, Path(data))
    raw = Path(out) / _IDX_FOLDERS[dataset] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    kept = {}
    for split, wanted in (("train", train_images), ("test", test_images)):
        images_file, labels_file = files[split]
        images, labels = _read_idx(dataset, images_file, 3), _read_idx(dataset, labels_file, 1)
        if wanted is not None and not 1 <= wanted <= len(labels):
            raise SystemExit(f"--{split}-images must be between 1 and {len(labels)}, got {wanted}")
        # stratified_holdout's held positions are sorted: the subset keeps the files' order.
        index = np.arange(len(labels)) if wanted is None else stratified_holdout(labels, wanted, seed)[1]
        images_name, labels_name = _IDX_FILES[split]
        write_idx(raw / f"{images_name}.gz", images[index])
        write_idx(raw / f"{labels_name}.gz", labels[index])
        kept[split] = len(index)
    return kept


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder holding the raw IDX files (plain or .gz)")
    parser.add_argument("out", type=Path, help="folder to write <MNIST|FashionMNIST>/raw/ into")
    parser.add_argument("--dataset", choices=sorted(_IDX_FOLDERS), default="fashion-mnist")
    parser.add_argument("--train-images", type=int, required=True, help="training images kept")
    parser.add_argument("--test-images", type=int, default=None, help="test images kept [all]")
    parser.add_argument("--seed", type=int, default=0, help="picks the images")
    args = parser.parse_args(argv)
    kept = write_subset(args.data, args.out, dataset=args.dataset, train_images=args.train_images,
                        test_images=args.test_images, seed=args.seed)
    print(f"{args.out / _IDX_FOLDERS[args.dataset] / 'raw'}: {kept['train']} training and {kept['test']} test "
          f"images; use --dataset {args.dataset} --data {args.out}")
    return kept


if __name__ == "__main__":
    main()
