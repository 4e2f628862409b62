"""The OptunaHub package of the surrogate sampler (contrib/optunahub), loaded offline as OptunaHub does."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import optuna
import optunahub
import pytest
import yaml
from optuna.trial import TrialState
from packaging.requirements import Requirement

import optnas.samplers
from tests.conftest import Scenarios, SessionScenarios, selected, start_with_session

ROOT = Path(__file__).resolve().parents[1]
# The folder that plays the registry's `package/`: packages live at <category>/<name> below it.
REGISTRY_ROOT = ROOT / "contrib" / "optunahub"
PACKAGE = "samplers/optnas_surrogate"
FOLDER = REGISTRY_ROOT / PACKAGE


@pytest.fixture(scope="module")
def module():
    return optunahub.load_local_module(package=PACKAGE, registry_root=str(REGISTRY_ROOT))


def _front_matter() -> dict:
    text = (FOLDER / "README.md").read_text()
    assert text.startswith("---\n"), "README.md must open with the registry's front matter"
    return yaml.safe_load(text.split("---\n")[1])


def test_folder_has_what_the_registry_template_has():
    # The registry's template/ holds these four; requirements.txt is optional but we need it.
    for name in ("__init__.py", "README.md", "LICENSE", "example.py", "requirements.txt"):
        assert (FOLDER / name).is_file(), name
    assert (FOLDER / "LICENSE").read_text().startswith("MIT License")


def test_front_matter_passes_the_registry_header_check():
    # The keys and non-empty values that optunahub-registry/header_confirm.py asserts.
    meta = _front_matter()
    for key in ("author", "title", "description", "tags", "optuna_versions", "license"):
        assert meta.get(key) not in (None, ""), key
    assert "sampler" in [tag.lower() for tag in meta["tags"]]
    assert meta["license"] == "MIT License"
    # The versions declared are those the package was confirmed on; setup.py admits any Optuna 5,
    # so a release of it that CI installs must not turn this red, only one of another major.
    majors = {str(version).split(".")[0] for version in meta["optuna_versions"]}
    assert optuna.__version__.split(".")[0] in majors


def test_requirements_parse():
    lines = [line for line in (FOLDER / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    names = {Requirement(line).name for line in lines}
    assert {"optuna", "optunahub"} <= names


def test_loaded_module_exports_optnas_sampler(module):
    # A re-export, not a copy that could drift from the library.
    assert module.__name__ == "optunahub_registry.package.samplers.optnas_surrogate"
    assert module.SurrogateSampler is optnas.samplers.SurrogateSampler
    assert module.OptunaSpaceStrategy is optnas.samplers.OptunaSpaceStrategy


def test_loaded_sampler_runs_a_study_with_its_batches(module):
    n_doe, n_iter = 6, 3
    sampler = module.SurrogateSampler(n_doe=n_doe, n_iter=n_iter, seed=0, predictor="rbf", sec_predictor="rbf",
                                      population_size=20, generations=5)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_int("y", 0, 8)
        c = trial.suggest_categorical("c", ["a", "b"])
        return x + 0.1 * y, (1.0 - x) ** 2 + (0.2 if c == "b" else 0.0)

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=n_doe + 2 * n_iter)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * (n_doe + 2 * n_iter)
    # The trials after the design are the surrogate step's candidates, as the study stored them.
    for k in (1, 2):
        stored = study.user_attrs[f"surrogate:batch:{k:04d}"]["params"]
        first = n_doe + (k - 1) * n_iter
        assert [t.params for t in trials[first:first + n_iter]] == stored


def _example_runs_offline(tmp_path: Path) -> None:
    # From another folder, as a user runs it: the example finds the registry root from its own path.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPTUNAHUB_NO_ANALYTICS": "1"}
    done = subprocess.run([sys.executable, str(FOLDER / "example.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Trial 19 finished" in done.stderr
    front = [line.split() for line in done.stdout.splitlines()]
    assert front and all(line[0].isdigit() for line in front)


@start_with_session
def _scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    """The example's interpreter runs beside the other tests (conftest.start_with_session)."""
    if not selected(request, test_example_runs_offline):
        return {}
    return {"example": partial(_example_runs_offline, tmp_path_factory.mktemp("example"))}


def test_example_runs_offline(session_scenarios: SessionScenarios):
    session_scenarios.result(__name__, "example", timeout=300)
