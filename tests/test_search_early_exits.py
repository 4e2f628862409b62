"""A real eemobilenetv3 search through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.networks.costs import profile
from optnas.networks.exit_costs import exit_profile
from optnas.spaces import as_subnet
from tests.conftest import invoke_cli, tiny_cifar10_options

MMAX = 6.0


def test_early_exit_search_stores_exit_stats_and_meets_mmax(
    supernet_file: Path, tiny_cifar10: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'ee.db'}"
    # In this process (a subprocess would import torch again), in the test's own folder.
    monkeypatch.chdir(tmp_path)
    result = invoke_cli(
        "search", "--storage", url, "--study-name", "ee", "--supernet-path", str(supernet_file),
        "--search-space", "eemobilenetv3", "--sec-obj", "avg_macs", "--mmax", str(MMAX),
        # The surrogate sampler predicts avg_macs (and top1) for the batch after the design.
        "--predictor", "rbf", "--sec-predictor", "rbf",
        "--n-doe", "3", "--iterations", "1", "--n-iter", "1", "--n-epochs", "0",
        # The heads train on the tiny tree's 64 training images (one step), and each trial's
        # figures come from one pass over its 20 held-out images.
        "--warmup-ee-epochs", "1", "--ee-epochs", "0", *tiny_cifar10_options(tiny_cifar10),
        "--save", str(tmp_path / "run"), "--quiet",
    )
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="ee", storage=url, sampler=optuna.samplers.RandomSampler())
    assert study.metric_names == ["top1", "avg_macs"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    for trial in complete:
        attrs = trial.user_attrs
        subnet = attrs["subnet"]
        figures = exit_profile(subnet, 10)
        assert attrs["exit_macs"] == pytest.approx(figures["exit_macs"])
        assert attrs["macs"] == pytest.approx(profile(subnet, 10)["macs"])
        assert attrs["params"] == pytest.approx(figures["params"])
        assert len(attrs["exit_ratios"]) == as_subnet(subnet).n_exits + 1 == len(attrs["exit_top1"])
        assert sum(attrs["exit_ratios"]) == pytest.approx(1.0)
        assert attrs["avg_macs"] == pytest.approx(sum(r * m for r, m in zip(attrs["exit_ratios"], attrs["exit_macs"])))
        assert trial.values[1] == attrs["avg_macs"]
        assert trial.constraints["avg_macs"] == pytest.approx(attrs["avg_macs"] - MMAX)
        assert 0 <= attrs["top1"] <= 100 and all(0 <= t <= 100 for t in attrs["exit_top1"])
        # tiny_ml weighs the expected MACs, penalised only above --mmax.
        penalty = 1e10 * max(0.0, attrs["avg_macs"] - MMAX)
        expected = attrs["params"] + (attrs["avg_macs"] + penalty) / 40 + attrs["activations"]
        assert attrs["tiny_ml"] == pytest.approx(expected)
    # Some trial meets the bound whatever its heads' confidences, so on any machine: even its
    # final exit, the costliest, is within MMAX (the design starts with the smallest network).
    assert any(max(t.user_attrs["exit_macs"]) <= MMAX for t in complete)
    assert study.best_trials and all(t.user_attrs["avg_macs"] <= MMAX for t in study.best_trials)

    rows = json.loads(invoke_cli("trials", "--study-name", "ee", "--storage", url, "--format", "json").stdout)
    for count in (1, 2, 3, 4):
        listed = invoke_cli("trials", "--study-name", "ee", "--storage", url, "--format", "json",
                            "--n-exits", str(count))
        assert listed.returncode == 0
        numbers = [row["number"] for row in json.loads(listed.stdout)]
        assert numbers == [row["number"] for row in rows if sum(row["subnet"]["exits"]) == count]


def test_early_exit_options_are_checked() -> None:
    base = {"search_space": "eemobilenetv3", "sampler": "nsga2"}
    with pytest.raises(ValueError, match="needs search_space eemobilenetv3"):
        SearchConfig(sec_obj="avg_macs").validate()
    with pytest.raises(ValueError, match="sec_obj top1_robust needs search_space mobilenetv3"):
        SearchConfig(search_space="eemobilenetv3", sec_obj="top1_robust").validate()
    with pytest.raises(ValueError, match="part of ee_method confidence"):
        SearchConfig(**base, support_set=True).validate()
    with pytest.raises(ValueError, match="ee_epochs must be zero or more"):
        SearchConfig(**base, ee_epochs=-1).validate()
    config = SearchConfig(**base, sec_obj="avg_macs", mmax=5.0, top1min=50.0).validate()
    assert config.constraint_bounds == {"avg_macs": 5.0, "top1min": 50.0}
    from optnas.evaluation.costs import check_constraints_satisfiable

    with pytest.raises(ValueError, match=r"no architecture satisfies mmax 0\.5"):
        config = SearchConfig(**base, mmax=0.5).validate()
        check_constraints_satisfiable(config.cost_options(), config.constraint_bounds)


def test_trials_n_exits_refuses_other_spaces(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    study = optuna.create_study(study_name="m", storage=url)
    study.enqueue_trial({})
    trial = study.ask()
    trial.set_user_attr("subnet", {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 32})
    study.tell(trial, 1.0)
    result = invoke_cli("trials", "--study-name", "m", "--storage", url, "--n-exits", "1")
    assert result.returncode == 2 and "applies to eemobilenetv3 studies" in result.stderr
