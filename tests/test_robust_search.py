"""A search with top1_robust as the first objective, and its stored parts."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optnas.evaluation.flatness import alpha_norm, top1_robust
from tests.conftest import invoke_cli


def _batch_quantities(url: str) -> set[str]:
    study = optuna.load_study(study_name="robust", storage=url, sampler=optuna.samplers.RandomSampler())
    return set(study.user_attrs["surrogate:batch:0001"]["predicted"])


def test_top1_robust_search_stores_values_that_recompute(
    supernet_file: Path, tiny_cifar10: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    # On 64 training images (BN statistics) and 20 held out (accuracy and robustness): what is
    # checked is how the figures combine, and five candidates recalibrating BN on the 1378
    # training images of digits took 22 s of the 27.
    result = invoke_cli(
        "search", "--storage", url, "--study-name", "robust", "--supernet-path", str(supernet_file),
        "--dataset", "cifar10", "--data", str(tiny_cifar10),
        "--n-doe", "2", "--iterations", "1", "--n-iter", "1", "--n-epochs", "0", "--vld-size", "20",
        "--first-obj", "top1_robust", "--sec-obj", "macs", "--predictor", "rbf", "--alpha", "0.6",
        "--sigma", "0.05,0.1", "--flat-samples", "1", "--save", str(tmp_path / "run"), "--quiet",
    )
    assert result.returncode == 0, result.stderr
    # The surrogate sampler predicted top1_robust for the trial after the design.
    assert _batch_quantities(url) == {"top1_robust"}
    assert "top1_robust" in result.stdout and "robustness" in result.stdout
    study = optuna.load_study(study_name="robust", storage=url, sampler=optuna.samplers.RandomSampler())
    assert study.metric_names == ["top1_robust", "macs"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    by_number = {t.number: t for t in complete}
    for trial in complete:
        attrs = trial.user_attrs
        iteration = attrs["alpha_norm_iteration"]
        stored_norm = study.user_attrs[f"alpha_norm:{iteration:04d}"]["alpha_norm"]
        assert attrs["alpha_norm"] == stored_norm
        assert 0.0 <= attrs["robustness"] <= 100.0
        expected = top1_robust(attrs["top1"], attrs["robustness"], alpha=0.6, alpha_norm=stored_norm)
        assert trial.values[0] == pytest.approx(expected)
        assert attrs["top1_robust"] == pytest.approx(expected)
    # DOE trials belong to iteration 0, then n_iter trials per iteration.
    assert sorted(t.user_attrs["alpha_norm_iteration"] for t in complete) == [0, 0, 1]
    # Iteration 0: the smallest and the largest architecture, evaluated as candidates.
    pilot = study.user_attrs["alpha_norm:0000"]["pilot"]
    assert [p["subnet"]["d"] for p in pilot] == [[2] * 5, [4] * 5]
    assert study.user_attrs["alpha_norm:0000"]["alpha_norm"] == pytest.approx(
        alpha_norm([p["top1"] for p in pilot], [p["robustness"] for p in pilot])
    )
    for iteration, n_used in ((1, 2),):
        record = study.user_attrs[f"alpha_norm:{iteration:04d}"]
        used = [by_number[n] for n in record["trials"]]
        assert len(used) == n_used
        assert record["alpha_norm"] == pytest.approx(
            alpha_norm([t.user_attrs["top1"] for t in used], [t.user_attrs["robustness"] for t in used])
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--first-obj", "top1_robust", "--sec-obj", "top1_robust", "--sampler", "random"], "both top1_robust"),
        (["--sec-obj", "top1_robust", "--sampler", "random", "--sigma", "0.1,x"], "--sigma"),
        (["--sec-obj", "top1_robust", "--sampler", "random", "--alpha", "1.5"], "--alpha"),
        (["--sec-obj", "top1_robust", "--sampler", "random", "--flat-samples", "0"], "--flat-samples"),
        (["--optim", "sam", "--rho", "-1"], "--rho"),
    ],
)
def test_bad_robust_options_are_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--save", str(tmp_path),
                        "--quiet", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
