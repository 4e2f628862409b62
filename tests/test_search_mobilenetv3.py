"""A real mobilenetv3 search through the CLI, with NSGA-II and with the surrogate sampler.

Candidates are scored on the tiny CIFAR-10 tree: what is checked is what the study stores.
test_quickstart searches the embedded default (digits) end to end.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optnas.networks.costs import profile
from tests.conftest import invoke_cli, tiny_cifar10_options


@pytest.mark.parametrize("sampler", ["nsga2", "surrogate"])
def test_search_stores_exact_costs_and_accuracies(
    sampler: str, supernet_file: Path, tiny_cifar10: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    # In this process: a subprocess would spend seconds importing torch again; nothing is
    # written outside --storage and --save, and the working folder is the test's anyway.
    monkeypatch.chdir(tmp_path)
    result = invoke_cli(
        "search", "--storage", url, "--study-name", "search", "--supernet-path", str(supernet_file),
        # 3 trials: the design, then one candidate of the sampler's first iteration.
        "--n-doe", "2", "--iterations", "1", "--n-iter", "1", "--n-epochs", "0", *tiny_cifar10_options(tiny_cifar10),
        "--sec-obj", "params", "--pmax", "3.2", "--sampler", sampler, "--predictor", "rbf",
        "--save", str(tmp_path / "run"), "--quiet",
    )
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="search", storage=url, sampler=optuna.samplers.RandomSampler())
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    for trial in complete:
        subnet = trial.user_attrs["subnet"]
        exact = profile(subnet, 10)
        for key in ("params", "macs", "activations", "peak_activations"):
            assert trial.user_attrs[key] == pytest.approx(exact[key])
        assert 0.0 <= trial.user_attrs["top1"] <= 100.0
        assert trial.constraints["params"] == pytest.approx(exact["params"] - 3.2)
        assert len(trial.params) == 45
    # Some trial is feasible on any machine (the surrogate's design starts with the smallest
    # network, 2.1 M; NSGA-II's first generation is drawn from the seed alone), so the feasible
    # Pareto set is not empty, and Optuna keeps the infeasible trials out of it.
    assert study.best_trials and all(t.user_attrs["params"] <= 3.2 for t in study.best_trials)
