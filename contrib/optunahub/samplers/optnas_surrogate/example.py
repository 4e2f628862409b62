"""A two-objective study with optnas's surrogate sampler, loaded through OptunaHub.

Runs offline from this folder (or from a checkout of the registry, where it sits at
``package/samplers/optnas_surrogate``); once registered, ``optunahub.load_module`` loads it.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import optunahub


def objective(trial: optuna.Trial) -> tuple[float, float]:
    """ZDT1 on three floats, plus a categorical that scales the second objective."""
    x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(3)]
    scale = trial.suggest_categorical("scale", [1.0, 1.5, 2.0])
    g = 1.0 + 9.0 * sum(x[1:]) / (len(x) - 1)
    return x[0], scale * g * (1.0 - (x[0] / g) ** 0.5)


# The registry root is the folder above samplers/: `contrib/optunahub` in optnas, `package` in
# the registry. Once registered: optunahub.load_module("samplers/optnas_surrogate").
module = optunahub.load_local_module(
    package="samplers/optnas_surrogate", registry_root=str(Path(__file__).resolve().parents[2])
)
# A Latin design of 10 trials, then one trial per step (this study is sequential), chosen on
# Gaussian-process surrogates.
sampler = module.SurrogateSampler(n_doe=10, seed=0)
study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
study.optimize(objective, n_trials=20)
for trial in sorted(study.best_trials, key=lambda t: t.values[0]):
    print(trial.number, [round(v, 3) for v in trial.values], trial.params["scale"])
