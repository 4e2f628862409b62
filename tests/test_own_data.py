"""`--dataset folder` end to end: search, select, train, export (and ood, supernet train) on a tree of
seven classes with odd names and tiny images of mixed sizes and modes; the exported files carry
the class names in label order, and bad or edited trees are refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from optnas.data.datasets import load_dataset
from tests.conftest import invoke_cli
from tests.datasets_fixtures import ODD_CLASSES, make_own_folder

CLASSES = sorted(ODD_CLASSES)
# The smallest search that trains a supernet on the spot: the narrowest supernet (a quarter of
# the time of the default width, search to export), one epoch at 16x16, two candidates scored
# on the inherited weights.
TINY = ("--n-doe", "2", "--iterations", "0", "--n-epochs", "0", "--supernet-epochs", "1", "--vld-size", "7",
        "--lr", "16", "--ur", "16", "--width-mult", "0.35", "--threads", "1", "--quiet")


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("own-data")
    tree = make_own_folder(root / "my images", n_train=6, n_test=2)
    url = f"sqlite:///{root / 'study.db'}"
    result = invoke_cli("search", "--dataset", "folder", "--data", str(tree), "--storage", url, "--study-name", "own",
                        "--save", str(root / "run"), *TINY)
    assert result.returncode == 0, result.stderr
    return {"root": root, "tree": tree, "url": url}


def test_search_records_the_classes_in_the_study(searched: dict) -> None:
    study = optuna.load_study(study_name="own", storage=searched["url"])
    assert study.user_attrs["classes"] == CLASSES
    assert study.user_attrs["config"]["dataset"] == "folder" and study.user_attrs["config"]["n_classes"] == 7
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    (supernet,) = (searched["root"] / "run").glob("supernet-folder-*.pth")
    assert torch.load(supernet, map_location="cpu", weights_only=True)["n_classes"] == 7


def test_select_train_export_carry_the_class_names(searched: dict) -> None:
    chosen = searched["root"] / "chosen"
    result = invoke_cli("select", "--study-name", "own", "--storage", searched["url"], "-n", "1", "--save", str(chosen))
    assert result.returncode == 0, result.stderr
    (folder,) = chosen.glob("net-*_0")
    assert json.loads((folder / "source.json").read_text())["classes"] == CLASSES
    result = invoke_cli("train", str(folder), "--epochs", "0", "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    stats = json.loads((folder / "net.stats").read_text())

    result = invoke_cli("export", str(folder))
    assert result.returncode == 0, result.stderr
    report = json.loads((folder / "export-onnx.json").read_text())
    assert report["classes"] == CLASSES
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / "net.onnx"), providers=["CPUExecutionProvider"])
    meta = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    test = load_dataset("folder", searched["tree"]).test
    assert meta["classes"] == CLASSES and meta["mean"] == pytest.approx(list(test.mean))
    # The file's outputs, read through its own class names, score the test images (named by
    # their folders) as `optnas train` scored them by label: the names are in label order.
    images, _ = test.tensors(report["resolution"])
    logits = session.run(["logits"], {"image": images.numpy()})[0]
    predicted = [meta["classes"][index] for index in logits.argmax(1)]
    truth = [Path(path).parent.name for path in test.paths]
    assert sorted(set(truth)) == CLASSES
    assert 100 * np.mean([p == t for p, t in zip(predicted, truth)]) == pytest.approx(stats["top1_test"])


    result = invoke_cli("ood", "--subnet", str(folder / "net.subnet"), "--weights", str(folder / "final.pth"),
                        "--dataset", "folder", "--data", str(searched["tree"]), "--corruptions", "gaussian_noise",
                        "--severities", "1", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_images"] == 14


def test_supernet_train_on_a_folder(searched: dict) -> None:
    out = searched["root"] / "supernet.pth"
    result = invoke_cli("supernet", "train", "--dataset", "folder", "--data", str(searched["tree"]), "--epochs", "1",
                        "--vld-size", "7", "--lr", "16", "--ur", "16", "--width-mult", "0.35", "--threads", "1",
                        "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert torch.load(out, map_location="cpu", weights_only=True)["n_classes"] == 7


def test_bad_trees_are_refused_before_any_study(tmp_path: Path) -> None:
    tree = make_own_folder(tmp_path / "data", n_train=2, n_test=1)
    shutil.rmtree(tree / "test" / "zeta 7")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for args, message in [
        ((), "Error: folder: " + str(tree / "test") + " lacks the class folder(s) 'zeta 7' of train"),
        (("--data", str(tmp_path / "absent")), "is not a folder"),
        (("--data", None), "--dataset folder reads your images from --data DIR"),
    ]:
        given = ["--data", str(tree), *args]
        if None in given:
            given = given[:-4]
        result = invoke_cli("search", "--dataset", "folder", *given, "--storage", url, "--save", str(tmp_path / "run"),
                            *TINY)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr, result.stderr
    (tree / "test" / "zeta 7").mkdir()
    (tree / "test" / "zeta 7" / "0.png").write_bytes(b"not an image")
    result = invoke_cli("search", "--dataset", "folder", "--data", str(tree), "--storage", url,
                        "--save", str(tmp_path / "run"), *TINY)
    assert result.returncode == 2 and "0.png cannot be read as an image" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_an_edited_tree_is_refused_by_workers_and_training(tmp_path: Path) -> None:
    tree = make_own_folder(tmp_path / "data", ODD_CLASSES[:3], n_train=3, n_test=1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = invoke_cli("search", "--dataset", "folder", "--data", str(tree), "--storage", url, "--study-name", "s",
                        "--save", str(tmp_path / "run"), "--create-only", *TINY)
    assert result.returncode == 0, result.stderr
    recorded = optuna.load_study(study_name="s", storage=url).user_attrs["classes"]
    make_own_folder(tree, ("new one",), n_train=1, n_test=1)
    result = invoke_cli("worker", "--study-name", "s", "--storage", url, "--quiet")
    assert result.returncode == 2
    assert "are not the 3 the search recorded (new 'new one'); restore them or search again" in result.stderr
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    (chosen / "source.json").write_text(json.dumps({"config": {"dataset": "folder", "data": str(tree)},
                                                    "classes": recorded}))
    result = invoke_cli("train", str(chosen), "--quiet")
    assert result.returncode == 2 and "the search recorded (new 'new one')" in result.stderr
