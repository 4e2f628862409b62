"""``optnas search --int8``: every candidate scored as deployed, after static int8 quantization."""

from __future__ import annotations

from pathlib import Path

import onnx
import optuna
import pytest
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.evaluation import candidate
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.networks import quantization
from optnas.networks.inference import evaluate
from tests.conftest import invoke_cli

# The supernet fixture has taken one step on 64 CIFAR-10 images: on digits its subnets stay
# near chance, 10 % on a stratified validation split of 10 classes (12 images each of 120). The
# float and int8 figures of such a network are two accuracies near chance, whose argmaxes
# follow nearly tied logits that quantization may reorder: one draw of chance accuracy on 120
# images has a standard deviation of sqrt(0.1 * 0.9 / 120) = 2.7 points, the difference of two
# independent ones 3.9 points, and 20 points is five of those. Nothing tighter holds for any
# CPU's rounding; a trained network drops well under a point (tests/test_int8_export.py).
MAX_GAP = 20.0


def test_int8_search_ranks_by_the_int8_accuracy(
    supernet_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = []

    def counted(*args, **kwargs):
        draws.append(args)
        return quantization.calibration_indices(*args, **kwargs)

    monkeypatch.setattr(candidate, "calibration_indices", counted)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    # Two candidates (a quantization takes seconds): enough to show one calibration draw serves both.
    result = invoke_cli(
        "search", "--storage", url, "--study-name", "q", "--supernet-path", str(supernet_file),
        "--n-doe", "2", "--iterations", "0", "--n-epochs", "0", "--vld-size", "120", "--sec-obj", "params",
        "--sampler", "nsga2", "--int8", "--calib-images", "64", "--save", str(tmp_path / "run"), "--quiet",
    )
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="q", storage=url, sampler=optuna.samplers.RandomSampler())
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    for trial in complete:
        top1, top1_float = trial.user_attrs["top1"], trial.user_attrs["top1_float"]
        assert 0.0 <= top1 <= 100.0 and 0.0 <= top1_float <= 100.0
        # The objective is the int8 figure; 120 images make every accuracy a multiple of 1/1.2 %.
        assert trial.values[0] == top1
        assert round(top1 * 1.2, 6) == round(top1 * 1.2) and round(top1_float * 1.2, 6) == round(top1_float * 1.2)
        assert abs(top1 - top1_float) <= MAX_GAP
    # One draw of the calibration images for the whole search, from the training split with its seed.
    assert len(draws) == 1
    n_train, n_images, seed = draws[0]
    assert (n_images, seed) == (64, 0) and n_train > 64


def test_int8_top1_is_the_quantized_files_and_repeats(
    supernet_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SearchConfig(supernet_path=str(supernet_file), n_epochs=0, vld_size=120, int8=True,
                          calib_images=32, threads=1).validate()
    evaluator = CandidateEvaluator(config, tmp_path)
    scored = []
    onnx_top1 = quantization.onnx_top1

    def spy(path, *args, **kwargs):
        scored.append(sorted({node.op_type for node in onnx.load(str(path)).graph.node}))
        return onnx_top1(path, *args, **kwargs)

    monkeypatch.setattr(quantization, "onnx_top1", spy)
    subnet = config.make_space().smallest()
    first, model = evaluator.evaluate(subnet)
    calibration = evaluator.int8_calibration
    again = evaluator.int8_top1(model, subnet)
    # The same images calibrate every candidate, and the same network scores the same.
    assert evaluator.int8_calibration is calibration and len(calibration) == 32
    assert again == first["top1"]
    assert abs(first["top1"] - first["top1_float"]) <= MAX_GAP
    # What was scored is the int8 file: quantized operators, one file per call.
    assert len(scored) == 2 and all("QuantizeLinear" in ops and "DequantizeLinear" in ops for ops in scored)
    # top1_float is the float network's, which quantization left unchanged.
    assert first["top1_float"] == evaluate(model, evaluator.data.valid, resolution=int(subnet["r"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search-space", "nasbench201", "--dataset", "cifar10", "--sec-obj", "params"],
         "--int8 quantizes trained networks; nasbench201 is a table lookup"),
        (["--search-space", "eemobilenetv3", "--sec-obj", "avg_macs"], "--int8 scores single-exit networks"),
    ],
)
def test_int8_is_refused_where_no_single_exit_network_is_trained(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study-name", "x",
                        "--save", str(tmp_path / "run"), "--quiet", "--int8", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_calib_images_must_be_positive(tmp_path: Path) -> None:
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study-name", "x",
                        "--save", str(tmp_path / "run"), "--quiet", "--int8", "--calib-images", "0")
    assert result.returncode == 2, result.stderr
    assert "--calib-images must be at least 1" in result.stderr
