"""Corruptions, the CIFAR-C reader and `optnas ood`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from scipy import ndimage
from torch import nn

from optnas.data.corruptions import CORRUPTIONS, corrupt
from optnas.data.datasets import DataError, DataSplits
from optnas.evaluation.ood import OODRequest, cifar_c_errors, corruption_errors, load_cifar_c
from optnas.networks.supernet import extract_subnet
from optnas.spaces import MobileNetV3Space
from tests.conftest import invoke_cli

# Published parameters that do not grow in pixel distance: glass blur's severities 1-3 use one
# shuffling pass and 4-5 two; elastic_transform trades affine jitter for elastic displacement;
# frost darkens the image as it adds ice (its share of ice grows, checked by correlation).
NOT_MONOTONE_IN_PIXELS = {"glass_blur", "elastic_transform", "frost"}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """CIFAR-like smooth colour images, 32x32, in [0, 1]."""
    x = ndimage.gaussian_filter(np.random.default_rng(1).random((8, 32, 32, 3)), (0, 1, 1, 0))
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def _decorrelation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return float(np.mean(1 - (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_changes_image_keeps_shape_and_range_and_grows(name: str, images: np.ndarray) -> None:
    outputs = [corrupt(images, name, severity, np.random.default_rng(0)) for severity in range(1, 6)]
    distances = []
    for out in outputs:
        assert out.shape == images.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        distances.append(float(np.abs(out - images).mean()))
        assert distances[-1] > 1e-3, "the corruption left the images unchanged"
    if name not in NOT_MONOTONE_IN_PIXELS:
        assert all(np.diff(distances) > 0), distances
    elif name == "glass_blur":
        assert min(distances[3:]) > max(distances[:3]), distances
    elif name == "frost":
        decorrelations = [_decorrelation(images, out) for out in outputs]
        assert all(np.diff(decorrelations) > 0), decorrelations
    again = corrupt(images, name, 3, np.random.default_rng(0))
    assert np.array_equal(again, outputs[2])


def test_bad_corruption_arguments(images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "rain", 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "fog", 6, np.random.default_rng(0))


def _write_cifar_c(folder: Path, n: int = 4, corruptions: tuple[str, ...] = CORRUPTIONS) -> np.ndarray:
    """A CIFAR-10-C folder in the published format: 5*n images per corruption, severity 1 first."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n) % 10
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    rng = np.random.default_rng(0)
    for name in corruptions:
        np.save(folder / f"{name}.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    return labels


def test_tiny_cifar10c_folder_loads(supernet: nn.Module, tmp_path: Path) -> None:
    labels = _write_cifar_c(tmp_path / "CIFAR-10-C")
    arrays, read_labels = load_cifar_c("cifar10c", tmp_path)
    assert set(arrays) == set(CORRUPTIONS)
    assert np.array_equal(read_labels, labels)
    fog = np.load(tmp_path / "CIFAR-10-C" / "fog.npy")
    assert np.array_equal(arrays["fog"][2], fog[8:12])  # severity 3 = rows 2n..3n
    model = extract_subnet(supernet, MobileNetV3Space().smallest()).eval()
    request = OODRequest(dataset="cifar10c", data=str(tmp_path), corruptions=("fog", "snow"), severities=(1, 5))
    result = cifar_c_errors(model, request, resolution=32)
    assert set(result["errors"]) == {"fog", "snow"} and result["n_images"] == 4
    for errors in result["errors"].values():
        assert set(errors) == {"1", "5", "mean"}
        assert all(value in (0.0, 25.0, 50.0, 75.0, 100.0) for key, value in errors.items() if key != "mean")
    assert result["mce"] == pytest.approx(np.mean([e["mean"] for e in result["errors"].values()]))


def test_incomplete_cifar10c_folder_is_a_clear_error(tmp_path: Path) -> None:
    _write_cifar_c(tmp_path, corruptions=("fog",))
    with pytest.raises(DataError, match="lacks"):
        load_cifar_c("cifar10c", tmp_path)
    np.save(tmp_path / "snow.npy", np.zeros((7, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"snow\.npy"):
        load_cifar_c("cifar10c", tmp_path, ("fog", "snow"))


def test_on_the_fly_errors_count_the_corrupted_images(supernet: nn.Module, digits: DataSplits) -> None:
    test = digits.test.subset(range(30))
    model = extract_subnet(supernet, MobileNetV3Space().smallest()).eval()
    request = OODRequest(corruptions=("contrast", "gaussian_noise"), severities=(1, 5), seed=0)
    result = corruption_errors(model, test, request, resolution=32)
    for errors in result["errors"].values():
        for severity in ("1", "5"):
            assert round(errors[severity] * 30 / 100) == pytest.approx(errors[severity] * 30 / 100)
    assert 0.0 <= result["clean_error"] <= 100.0
    assert result == corruption_errors(model, test, request, resolution=32)


def test_ood_cli_on_a_trial_is_kept_in_the_study(supernet_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    result = invoke_cli(
        "search", "--storage", url, "--study-name", "s", "--supernet-path", str(supernet_file), "--n-doe", "1",
        "--iterations", "0", "--n-epochs", "0", "--vld-size", "60", "--sec-obj", "params", "--sampler", "random",
        "--save-ckpt", "--save", str(tmp_path / "run"), "--quiet",
    )
    assert result.returncode == 0, result.stderr
    result = invoke_cli("ood", "--study-name", "s", "--storage", url, "--trial", "0", "--n-images", "10",
                        "--corruptions", "fog,pixelate", "--severities", "1,5", "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    study = optuna.load_study(study_name="s", storage=url)
    stored = study.user_attrs["ood:trial:00000"]
    assert stored == printed and stored["trial"] == 0
    assert stored["top1"] == pytest.approx(study.trials[0].user_attrs["top1"])
    assert stored["mce"] == pytest.approx(np.mean([stored["errors"][c]["mean"] for c in ("fog", "pixelate")]))
    artifacts = optuna.artifacts.get_all_artifact_meta(study)
    assert [a.filename for a in artifacts] == ["ood-trial-00000.json"]
    table = invoke_cli("trials", "--study-name", "s", "--storage", url)
    assert "mce" in table.stdout.splitlines()[0] and f"{stored['mce']:.4g}" in table.stdout
    # The same network from its net.subnet and ckpt.pth gives the same errors.
    folder = tmp_path / "run" / "s" / "trial-00000"
    direct = invoke_cli("ood", "--subnet", str(folder / "net.subnet"), "--weights", str(folder / "ckpt.pth"),
                        "--n-images", "10", "--corruptions", "fog,pixelate", "--severities", "1,5", "--quiet",
                        "--json")
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout)["errors"] == stored["errors"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "either --trial"),
        (["--trial", "0"], "--study-name"),
        (["--subnet", "x.subnet"], "--weights"),
        (["--trial", "0", "--study-name", "nope"], "no study named"),
        (["--subnet", "x.subnet", "--weights", "w.pth", "--corruptions", "rain"], "unknown corruption"),
        (["--subnet", "x.subnet", "--weights", "w.pth", "--severities", "0,6"], "severities"),
    ],
)
def test_ood_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke_cli("ood", "--storage", f"sqlite:///{tmp_path / 'x.db'}", *args)
    assert result.returncode == 2 and message in result.stderr
