"""Tests of dataset loading, splitting, resizing and augmentation on tiny files in real formats."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from optnas.data.catalog import DATASETS, DataError, check_classes, class_names, n_classes_of
from optnas.data.datasets import (
    DataSplits,
    FolderImageSet,
    ImageSet,
    TensorImageSet,
    load_dataset,
    stratified_holdout,
)
from tests.datasets_fixtures import (
    ODD_CLASSES,
    make_cifar10,
    make_cifar100,
    make_idx,
    make_imagefolder,
    make_own_folder,
    make_svhn,
    write_idx,
)


def _rows(images: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in images}


def _raw(split: ImageSet, resolution: int = 32) -> np.ndarray:
    """Undo the normalization and return uint8 N×3×R×R pixels."""
    images, _ = split.tensors(resolution)
    mean = torch.tensor(split.mean).view(1, 3, 1, 1)
    std = torch.tensor(split.std).view(1, 3, 1, 1)
    return (images * std + mean).mul(255).round().to(torch.uint8).numpy()


def _read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cifar10(tmp_path_factory.mktemp("cifar10"), n_train=100, n_test=30)


def test_names_and_class_counts(tmp_path: Path) -> None:
    assert DATASETS == ("digits", "cifar10", "cifar100", "svhn", "cinic10", "imagenet", "mnist", "fashion-mnist",
                        "folder")
    assert [n_classes_of(name) for name in DATASETS[:-1]] == [10, 10, 100, 10, 10, 1000, 10, 10]
    make_own_folder(tmp_path)
    assert n_classes_of("folder", tmp_path) == len(ODD_CLASSES)
    with pytest.raises(DataError, match="folder: no data_dir given"):
        n_classes_of("folder")
    with pytest.raises(DataError, match=r"unknown dataset 'emnist'.*cifar10"):
        n_classes_of("emnist")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("emnist")


def test_digits_needs_nothing_else(digits: DataSplits) -> None:
    assert digits.name == "digits" and digits.n_classes == 10
    assert (len(digits.train), len(digits.valid), len(digits.test)) == (1078, 360, 359)
    for split in (digits.train, digits.valid, digits.test):
        assert isinstance(split, TensorImageSet)
        assert split.labels.dtype == torch.int64
        assert set(split.labels.tolist()) == set(range(10))
    images, _ = digits.train.tensors(8)
    assert images.shape == (1078, 3, 8, 8) and images.dtype == torch.float32
    assert torch.equal(images[:, 0], images[:, 2])  # gray repeated on three channels
    # Normalized with statistics of the training files.
    assert abs(images.mean().item()) < 0.1 and abs(images.std().item() - 1) < 0.1


def test_digits_test_split_is_fixed_and_valid_follows_seed(digits: DataSplits) -> None:
    other = load_dataset("digits", seed=1)
    assert torch.equal(other.test.tensors(8)[0], digits.test.tensors(8)[0])
    assert torch.equal(other.test.labels, digits.test.labels)
    assert not torch.equal(other.valid.tensors(8)[0], digits.valid.tensors(8)[0])
    again = load_dataset("digits", seed=0)
    assert torch.equal(again.valid.tensors(8)[0], digits.valid.tensors(8)[0])
    assert len(load_dataset("digits", vld_size=100).valid) == 100


@pytest.mark.parametrize("resolution", [8, 16, 32, 57])
def test_resize_to_any_resolution(digits: DataSplits, resolution: int) -> None:
    x, y = next(digits.valid.batches(64, resolution))
    assert x.shape == (64, 3, resolution, resolution) and x.dtype == torch.float32
    assert y.shape == (64,) and y.dtype == torch.int64
    assert torch.isfinite(x).all()


def test_tensors_are_cached_and_match_batches(digits: DataSplits) -> None:
    split = digits.valid.subset(range(100))
    split.cache_size = 2
    images, labels = split.tensors(20)
    batches = list(split.batches(32, 20))
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    assert torch.equal(images, torch.cat([x for x, _ in batches]))
    assert torch.equal(labels, torch.cat([y for _, y in batches]))
    assert split.tensors(20)[0] is images
    split.tensors(24)
    split.tensors(28)  # evicts resolution 20, the least recently used
    assert split.tensors(20)[0] is not images
    split.clear_cache()
    assert split.tensors(24)[0] is not split.tensors(28)[0]


def test_shuffle_drop_last_and_generator(digits: DataSplits) -> None:
    split = digits.valid
    labels = torch.cat([y for _, y in split.batches(50, 8, shuffle=True)])
    assert not torch.equal(labels, split.labels)
    assert torch.equal(labels.sort().values, split.labels.sort().values)
    sizes = [len(y) for _, y in split.batches(100, 8, drop_last=True)]
    assert sizes == [100, 100, 100]
    first, second = (
        torch.cat([x for x, _ in split.batches(50, 16, shuffle=True, augment=True, generator=g)])
        for g in (torch.Generator().manual_seed(3), torch.Generator().manual_seed(3))
    )
    assert torch.equal(first, second)
    with pytest.raises(ValueError, match="batch_size"):
        split.batches(0, 8)


def test_augment_crops_with_padding_and_flips() -> None:
    # A one-hot image shows where the crop moved it and whether it was mirrored.
    images = torch.zeros(400, 3, 16, 16)
    images[:, :, 7, 3] = 1.0
    labels = torch.zeros(400, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    for flip in (False, True):
        split = TensorImageSet(images, labels, 1, (0, 0, 0), (1, 1, 1), flip=flip)
        plain, _ = split.tensors(16)
        assert torch.equal(plain, images)
        x, _ = next(split.batches(400, 16, augment=True, generator=generator))
        assert x.shape == images.shape
        rows, cols = torch.nonzero(x[:, 0].sum(0) > 0, as_tuple=True)
        # Padding 16 // 8 = 2 moves the dot by at most 2 pixels.
        assert rows.min() == 5 and rows.max() == 9
        mirrored_cols = set(range(12 - 2, 12 + 3))
        assert set(cols.tolist()) == set(range(1, 6)) | (mirrored_cols if flip else set())


def test_validation_split_comes_from_train_only(cifar10_dir: Path) -> None:
    splits = load_dataset("cifar10", cifar10_dir.parent, vld_size=20, seed=0)
    train, valid, test = (_rows(_raw(s)) for s in (splits.train, splits.valid, splits.test))
    pool = set()
    for i in range(1, 6):
        data = _read_pickle(cifar10_dir / f"data_batch_{i}")[b"data"]
        pool |= _rows(data.reshape(-1, 3, 32, 32))
    assert len(train) == 80 and len(valid) == 20
    assert not train & valid and not valid & test and not train & test
    assert train | valid == pool
    # Stratified: 100 training images with 10 per class give 2 per class.
    assert torch.bincount(splits.valid.labels, minlength=10).tolist() == [2] * 10
    same = load_dataset("cifar10", cifar10_dir.parent, vld_size=20, seed=0)
    other = load_dataset("cifar10", cifar10_dir.parent, vld_size=20, seed=1)
    assert _rows(_raw(same.valid)) == valid
    assert _rows(_raw(other.valid)) != valid
    assert _rows(_raw(other.test)) == test


def test_stratified_holdout_counts() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    keep, held = stratified_holdout(labels, 10, seed=0)
    assert len(held) == 10 and len(keep) == 90
    assert sorted(set(keep) | set(held)) == list(range(100))
    # Shares are 5, 3, 1.5 and 0.5: the spare image goes to one of the two half shares.
    assert np.bincount(labels[held], minlength=4).tolist() in ([5, 3, 2, 0], [5, 3, 1, 1])
    assert np.array_equal(held, stratified_holdout(labels, 10, seed=0)[1])


def test_cifar10_layout_and_default_vld(cifar10_dir: Path) -> None:
    splits = load_dataset("cifar10", cifar10_dir.parent)
    assert splits.n_classes == 10
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (90, 10, 30)
    # data_dir may also be the batches folder itself.
    direct = load_dataset("cifar10", cifar10_dir)
    assert torch.equal(direct.test.labels, splits.test.labels)
    batch = _read_pickle(cifar10_dir / "test_batch")
    assert splits.test.labels.tolist() == batch[b"labels"]
    assert np.array_equal(_raw(splits.test), batch[b"data"].reshape(-1, 3, 32, 32))
    x, _ = next(splits.train.batches(16, 64, augment=True))
    assert x.shape == (16, 3, 64, 64)
    assert splits.test.mean == (0.4914, 0.4822, 0.4465)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    folder = make_cifar100(tmp_path)
    splits = load_dataset("cifar100", tmp_path, vld_size=50)
    assert splits.n_classes == 100 and splits.test.n_classes == 100
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (150, 50, 100)
    assert splits.test.labels.tolist() == _read_pickle(folder / "test")[b"fine_labels"]
    assert splits.test.tensors(32)[0].shape == (100, 3, 32, 32)
    assert len(load_dataset("cifar100", folder).valid) == 20


def test_svhn_labels_ten_as_zero(tmp_path: Path) -> None:
    from scipy.io import loadmat

    make_svhn(tmp_path, n_train=40, n_test=20)
    splits = load_dataset("svhn", tmp_path, vld_size=10)
    mat = loadmat(tmp_path / "test_32x32.mat")
    expected = mat["y"].reshape(-1) % 10
    assert splits.test.labels.tolist() == expected.tolist()
    assert 0 in splits.test.labels.tolist()
    assert np.array_equal(_raw(splits.test), mat["X"].transpose(3, 2, 0, 1))
    assert (len(splits.train), len(splits.valid), splits.n_classes) == (30, 10, 10)


def test_cinic10_folders(tmp_path: Path) -> None:
    classes = ("airplane", "bird", "cat")
    make_imagefolder(tmp_path, classes, n_per_class=5, splits=("train", "valid", "test"))
    splits = load_dataset("cinic10", tmp_path, vld_size=3)
    assert splits.n_classes == 3 and isinstance(splits.train, FolderImageSet)
    # Labels index the class folders present, whose names the splits and the catalog give alike.
    assert splits.classes == classes == class_names("cinic10", tmp_path) and class_names("cinic10") is None
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (12, 3, 15)
    assert not set(splits.train.paths) & set(splits.valid.paths)
    assert all("/train/" in p for p in splits.valid.paths)
    assert all("/test/" in p for p in splits.test.paths)
    assert sorted(splits.valid.labels.tolist()) == [0, 1, 2]
    for augment in (False, True):
        batches = list(splits.train.batches(5, 24, shuffle=True, augment=augment))
        assert [x.shape for x, _ in batches] == [(5, 3, 24, 24)] * 2 + [(2, 3, 24, 24)]
    images, labels = splits.test.tensors(12)
    assert images.shape == (15, 3, 12, 12) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    first, second = (
        torch.cat([x for x, _ in splits.train.batches(4, 12, augment=True, generator=g)])
        for g in (torch.Generator().manual_seed(1), torch.Generator().manual_seed(1))
    )
    assert torch.equal(first, second)


def test_worker_processes_decode_the_same_images(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, ("cat", "dog"), n_per_class=3)
    inline = load_dataset("cinic10", tmp_path, vld_size=2)
    workers = load_dataset("cinic10", tmp_path, vld_size=2, n_workers=2)
    first, second = (
        torch.cat(
            [x for x, _ in split.train.batches(2, 8, augment=True, generator=torch.Generator())]
        )
        for split in (inline, workers)
    )
    assert torch.equal(first, second)


def test_imagenet_folders(tmp_path: Path) -> None:
    wnids = ("n01440764", "n01443537")
    make_imagefolder(tmp_path, wnids, n_per_class=4, splits=("train", "val"), ext=".JPEG")
    splits = load_dataset("imagenet", tmp_path)
    assert splits.n_classes == 2 and len(splits.test) == 8
    assert (len(splits.train), len(splits.valid)) == (7, 1)
    assert next(splits.test.batches(8, 16))[0].shape == (8, 3, 16, 16)
    assert splits.test.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "cinic10", "imagenet", "mnist", "fashion-mnist",
                                  "folder"])
def test_missing_files_name_what_was_expected(tmp_path: Path, name: str) -> None:
    expected = {
        "cifar10": "cifar-10-batches-py/data_batch_1..5 and test_batch",
        "cifar100": "cifar-100-python/train and test",
        "svhn": "train_32x32.mat and test_32x32.mat",
        "cinic10": "train/<class>/*.png and test/<class>/*.png",
        "imagenet": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG",
        "mnist": "MNIST/raw/{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte, optionally .gz",
        "fashion-mnist": "FashionMNIST/raw/{train,t10k}-images-idx3-ubyte",
        "folder": "train/<class>/* and test/<class>/* image files (optionally val/<class>/*)",
    }[name]
    with pytest.raises(DataError, match=re.escape(f"{name}: {tmp_path} holds no {expected}")):
        load_dataset(name, tmp_path)
    with pytest.raises(DataError, match=f"{name}: no data_dir given"):
        load_dataset(name)
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset(name, tmp_path / "absent")


def test_incomplete_cifar_names_missing_file(cifar10_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes((cifar10_dir / "test_batch").read_bytes())
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", tmp_path)
    missing = str(info.value).split("; missing ")[1]
    assert missing == ", ".join(f"data_batch_{i}" for i in range(1, 6)) + f" in {folder}"


def test_malformed_files(cifar10_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in cifar10_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR python batch"):
        load_dataset("cifar10", tmp_path)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(DataError, match="'data' should be uint8 N×3072"):
        load_dataset("cifar10", tmp_path)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 12]}, f)
    with pytest.raises(DataError, match=r"labels outside 0\.\.9"):
        load_dataset("cifar10", tmp_path)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"labels": [0]}, f)
    with pytest.raises(DataError, match="lacks the 'data' and 'labels'"):
        load_dataset("cifar10", tmp_path)


def test_pickles_cannot_run_code(cifar10_dir: Path, tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in cifar10_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Payload(), "labels": []}, f)
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_python2_style_cifar_pickle(tmp_path: Path) -> None:
    # The original files were written by Python 2 with numpy.core paths and str keys.
    make_cifar10(tmp_path, n_train=20, n_test=10)
    folder = tmp_path / "cifar-10-batches-py"
    entry = {"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10))}
    raw = pickle.dumps(entry, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    (folder / "test_batch").write_bytes(raw)
    splits = load_dataset("cifar10", tmp_path, vld_size=5)
    assert splits.test.labels.tolist() == list(range(10))


def test_malformed_svhn(tmp_path: Path) -> None:
    from scipy.io import savemat

    make_svhn(tmp_path, n_train=10, n_test=10)
    (tmp_path / "train_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"train_32x32\.mat is not a readable \.mat file"):
        load_dataset("svhn", tmp_path)
    gray = {"X": np.zeros((28, 28, 1, 5), np.uint8), "y": np.ones((5, 1))}
    savemat(tmp_path / "train_32x32.mat", gray)
    with pytest.raises(DataError, match="'X' should be uint8 32×32×3×N"):
        load_dataset("svhn", tmp_path)
    savemat(tmp_path / "train_32x32.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match="lacks the 'X' and 'y'"):
        load_dataset("svhn", tmp_path)


def test_malformed_folders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="train holds no class folders"):
        load_dataset("cinic10", tmp_path)
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match="train holds no images"):
        load_dataset("cinic10", tmp_path)
    make_imagefolder(tmp_path, ("cat",), n_per_class=3, splits=("train",))
    make_imagefolder(tmp_path, ("dog",), n_per_class=3, splits=("test",))
    with pytest.raises(DataError, match="class folders missing from train: dog"):
        load_dataset("cinic10", tmp_path)


def test_unreadable_image_is_reported(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, ("cat", "dog"), n_per_class=3)
    bad = tmp_path / "test" / "dog" / "1.png"
    bad.write_bytes(b"not a png")
    splits = load_dataset("cinic10", tmp_path, vld_size=2)
    with pytest.raises(DataError, match=r"1\.png cannot be read as an image"):
        list(splits.test.batches(4, 8))
    Image.new("RGB", (8, 8)).save(bad)
    assert len(splits.test.tensors(8)[1]) == 6


def test_vld_size_must_leave_training_images(digits: DataSplits, cifar10_dir: Path) -> None:
    with pytest.raises(DataError, match="vld_size=100 must be between 1 and 99"):
        load_dataset("cifar10", cifar10_dir, vld_size=100)
    with pytest.raises(DataError, match="vld_size=0"):
        load_dataset("digits", vld_size=0)


def _idx_grey(path: Path) -> np.ndarray:
    """The images of a plain IDX file written by ``write_idx``: N×28×28."""
    raw = path.read_bytes()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


@pytest.mark.parametrize(("name", "gz", "given"), [
    ("fashion-mnist", False, "root"), ("fashion-mnist", True, "FashionMNIST"), ("mnist", True, "raw"),
    ("mnist", False, "root"),
])
def test_mnist_and_fashion_mnist_raw_files(tmp_path: Path, name: str, gz: bool, given: str) -> None:
    raw = make_idx(tmp_path, name, n_train=50, n_test=20, gz=gz)
    data_dir = {"root": tmp_path, "FashionMNIST": raw.parent, "raw": raw}[given]
    splits = load_dataset(name, data_dir, vld_size=10)
    assert (len(splits.train), len(splits.valid), len(splits.test), splits.n_classes) == (40, 10, 20, 10)
    assert splits.classes == class_names(name) and len(splits.classes) == 10
    assert splits.classes[0] == ("T-shirt/top" if name == "fashion-mnist" else "0")
    assert isinstance(splits.test, TensorImageSet)
    # The test file's pixels and labels, in order, grey on every channel.
    plain = make_idx(tmp_path / "plain", name, n_train=50, n_test=20, gz=False)
    grey = _idx_grey(plain / "t10k-images-idx3-ubyte")
    pixels = _raw(splits.test, 28)
    assert np.array_equal(pixels[:, 0], grey) and np.array_equal(pixels[:, 1], grey)
    expected_labels = np.frombuffer((plain / "t10k-labels-idx1-ubyte").read_bytes(), np.uint8, offset=8)
    assert splits.test.labels.tolist() == expected_labels.tolist()
    # Resized to the search's resolution; augmentation flips clothes only, never digits.
    assert splits.test.tensors(32)[0].shape == (20, 3, 32, 32)
    assert splits.train.flip == (name == "fashion-mnist")


def test_corrupt_idx_files_are_one_line_errors(tmp_path: Path) -> None:
    raw = make_idx(tmp_path, "fashion-mnist", n_train=20, n_test=10)
    images = raw / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(b"\x00\x00\x08\x01" + good[4:])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is not an IDX file of bytes with 3 dimension\(s\) "
                                        r"\(magic 00000801, expected 00000803\)"):
        load_dataset("fashion-mnist", tmp_path)
    images.write_bytes(good[:-5])
    with pytest.raises(DataError, match=r"holds 15675 bytes of data but its header announces 20x28x28 = 15680 "
                                        r"\(truncated or corrupt\)"):
        load_dataset("fashion-mnist", tmp_path)
    images.unlink()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz cannot be read"):
        load_dataset("fashion-mnist", tmp_path)
    (raw / "train-images-idx3-ubyte.gz").unlink()
    write_idx(images, np.zeros((19, 28, 28), np.uint8))
    with pytest.raises(DataError, match="has 19 images but 20 labels"):
        load_dataset("fashion-mnist", tmp_path)
    write_idx(images, np.zeros((20, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.full(20, 10, np.uint8))
    with pytest.raises(DataError, match=r"labels outside 0\.\.9"):
        load_dataset("fashion-mnist", tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=rf"missing t10k-labels-idx1-ubyte in {re.escape(str(raw))}$"):
        load_dataset("fashion-mnist", tmp_path)


def _all_pixels(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image channel means of x and x², in [0, 1], decoded as the loader decodes."""
    from optnas.data.datasets import read_rgb

    decoded = [np.asarray(read_rgb(p), np.float64).reshape(-1, 3) / 255 for p in paths]
    return np.mean([d.mean(0) for d in decoded], 0), np.mean([(d**2).mean(0) for d in decoded], 0)


def test_own_folder_of_any_classes_sizes_and_modes(tmp_path: Path) -> None:
    make_own_folder(tmp_path, n_train=6, n_test=2)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image, ignored")
    splits = load_dataset("folder", tmp_path, vld_size=7)
    order = sorted(ODD_CLASSES)
    assert splits.classes == tuple(order) == class_names("folder", tmp_path)
    assert order[0] == "01" and order[-1] == "Ünïcode class"
    assert (splits.n_classes, len(splits.train), len(splits.valid), len(splits.test)) == (7, 35, 7, 14)
    assert isinstance(splits.train, FolderImageSet)
    for split in (splits.train, splits.valid, splits.test):
        for path, label in zip(split.paths, split.labels.tolist()):
            assert Path(path).parent.name == order[label]
    assert sorted(splits.valid.labels.tolist()) == list(range(7))
    # Every size and mode comes out 3×R×R at any resolution.
    for resolution in (16, 40):
        images, _ = splits.test.tensors(resolution)
        assert images.shape == (14, 3, resolution, resolution) and torch.isfinite(images).all()
    batch, _ = next(splits.train.batches(35, 24, augment=True, shuffle=True, generator=torch.Generator()))
    assert batch.shape == (35, 3, 24, 24)
    # Grey images (L, 16-bit) are repeated on the three channels; 16-bit is scaled, not clipped.
    from optnas.data.datasets import read_rgb

    kinds = {p: Image.open(p).mode for p in splits.test.paths}
    for path, mode in kinds.items():
        rgb = np.asarray(read_rgb(path))
        if mode in ("L", "I;16", "I"):
            assert np.array_equal(rgb[..., 0], rgb[..., 2])
    sixteen = next(p for p, mode in {p: Image.open(p).mode for p in splits.train.paths}.items() if mode.startswith("I"))
    assert np.abs(np.asarray(read_rgb(sixteen))[..., 0].astype(int)
                  - np.asarray(Image.open(sixteen), np.float64) / 257).max() <= 0.5
    # Mean and std of the training files (all 42 images here: fewer than the 512 sampled).
    pool = sorted(str(p) for p in (tmp_path / "train").rglob("*") if p.suffix in (".png", ".jpg"))
    first, second = _all_pixels(pool)
    assert np.allclose(splits.train.mean, first) and np.allclose(splits.test.std, np.sqrt(second - first**2))


def test_own_folder_val_is_the_validation_split(tmp_path: Path) -> None:
    make_own_folder(tmp_path, ODD_CLASSES[:3], n_train=4, n_test=2, n_val=3)
    splits = load_dataset("folder", tmp_path)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (12, 9, 6)
    assert all("/val/" in p for p in splits.valid.paths)
    smaller = load_dataset("folder", tmp_path, vld_size=3, seed=1)
    assert len(smaller.train) == 12 and sorted(smaller.valid.labels.tolist()) == [0, 1, 2]
    with pytest.raises(DataError, match="vld_size=10 must be between 1 and 9"):
        load_dataset("folder", tmp_path, vld_size=10)


def test_own_folder_bad_layouts_are_one_line(tmp_path: Path) -> None:
    def refused(match: str) -> None:
        with pytest.raises(DataError, match=match) as info:
            load_dataset("folder", tmp_path)
        assert "\n" not in str(info.value)

    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    refused("train holds no class folders")
    make_own_folder(tmp_path, ("only",), n_train=2, n_test=1)
    refused(r"holds one class folder \('only'\); a classifier needs at least two")
    make_own_folder(tmp_path, ("zeta 7",), n_train=2, n_test=0)
    refused(r"test lacks the class folder\(s\) 'zeta 7' of train")
    (tmp_path / "test" / "zeta 7").mkdir()
    refused(r"test has no images .* in 'zeta 7'")
    make_own_folder(tmp_path, ("zeta 7",), n_train=2, n_test=1)
    (tmp_path / "test" / "stray").mkdir()
    refused("test has class folders missing from train: stray")
    (tmp_path / "test" / "stray").rmdir()
    (tmp_path / "val" / "only").mkdir(parents=True)
    refused(r"val lacks the class folder\(s\) 'zeta 7' of train")
    (tmp_path / "val" / "only").rmdir()
    (tmp_path / "val").rmdir()
    (tmp_path / "train" / "only" / "1.png").write_bytes(b"\x89PNG broken")
    refused(r"folder: .*train/only/1\.png cannot be read as an image")
    (tmp_path / "train" / "only" / "1.png").unlink()
    assert load_dataset("folder", tmp_path, vld_size=1).classes == ("only", "zeta 7")


def test_edited_folder_no_longer_matches_the_recorded_classes(tmp_path: Path) -> None:
    make_own_folder(tmp_path, ("a", "b"), n_train=2, n_test=1)
    recorded = list(class_names("folder", tmp_path))
    check_classes("folder", tmp_path, recorded)
    check_classes("folder", tmp_path, None)
    make_own_folder(tmp_path, ("c d",), n_train=2, n_test=1)
    with pytest.raises(DataError, match=r"are not the 2 the search recorded \(new 'c d'\)"):
        check_classes("folder", tmp_path, recorded)
