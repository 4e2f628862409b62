"""Studies through the CLI, checked with Optuna's own API, its CLI and optuna-dashboard.

The NAS-Bench-201 space evaluates by table lookup, so these searches take seconds.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest
from optuna.trial import TrialState

from optnas.optuna_private import study_storage
from tests.conftest import invoke_cli, selected
from tests.forked import Forked

NAME = "nb"
SEARCH = ["search", "--search-space", "nasbench201", "--dataset", "cifar10", "--sec-obj", "params",
          "--n-doe", "8", "--iterations", "2", "--n-iter", "4", "--quiet", "--study-name", NAME]


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return list(connection.iterdump())


def _study(url: str, name: str = NAME) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler())


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 16-trial study with a constraint that some architectures violate."""
    folder = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{folder / 'study.db'}"
    # In this process (a subprocess spends seconds importing torch); the resume tests below
    # run `optnas resume` in another process, as a user would.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = invoke_cli(*SEARCH, "--storage", url, "--pmax", "0.5", "--save", str(folder / "run"))
    assert result.returncode == 0, result.stderr
    assert "feasible Pareto set" in result.stdout
    assert "optnas dashboard --storage" in result.stdout
    return folder, url


def test_study_holds_trials_names_constraints_and_attrs(searched: tuple[Path, str]) -> None:
    _, url = searched
    study = _study(url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 16
    assert study.metric_names == ["top1", "params"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    config = study.user_attrs["config"]
    assert config["search_space"] == "nasbench201" and config["pmax"] == 0.5
    assert study.user_attrs["optnas_version"]
    for trial in complete:
        assert set(trial.params) == {f"op{i}" for i in range(6)}
        assert trial.values == [trial.user_attrs["top1"], trial.user_attrs["params"]]
        assert trial.constraints["params"] == pytest.approx(trial.user_attrs["params"] - 0.5)
        assert trial.user_attrs["feasible"] == (trial.user_attrs["params"] <= 0.5)
        assert len(trial.user_attrs["subnet"]["ops"]) == 6
    assert any(not t.user_attrs["feasible"] for t in complete), "the test needs an infeasible trial"
    # Optuna's Pareto set honours the constraint.
    assert study.best_trials and all(t.user_attrs["params"] <= 0.5 for t in study.best_trials)
    iterations = [study.user_attrs[f"iteration:{k:04d}"] for k in range(3)]
    assert [it["n_complete"] for it in iterations] == [8, 12, 16]
    hvs = [it["hv"] for it in iterations]
    assert all(0 < hv < 1 for hv in hvs) and hvs == sorted(hvs)


def test_artifacts_and_files_per_trial(searched: tuple[Path, str]) -> None:
    folder, url = searched
    study = _study(url)
    store = optuna.artifacts.FileSystemArtifactStore(str(folder / "run" / "artifacts"))
    trial = study.get_trials(states=(TrialState.COMPLETE,))[0]
    metas = {meta.filename: meta
             for meta in optuna.artifacts.get_all_artifact_meta(trial, storage=study_storage(study))}
    assert set(metas) == {"net.subnet", "net.stats"}
    out = folder / "downloaded.json"
    optuna.artifacts.download_artifact(artifact_store=store, file_path=str(out),
                                       artifact_id=metas["net.subnet"].artifact_id)
    # The file is the trial's subnet with the name of its space.
    assert json.loads(out.read_text()) == {"space": "nasbench201", **trial.user_attrs["subnet"]}
    stats = json.loads((folder / "run" / NAME / f"trial-{trial.number:05d}" / "net.stats").read_text())
    assert stats["top1"] == trial.user_attrs["top1"]


def test_optuna_command_line_tool_reads_the_study(searched: tuple[Path, str]) -> None:
    _, url = searched
    result = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "trials", "--study-name", NAME, "--storage", url, "-f", "json"],
        capture_output=True, text=True, check=True,
    )
    rows = json.loads(result.stdout)
    assert len(rows) == 16
    assert set(rows[0]["values"]) == {"top1", "params"}
    assert {"subnet", "top1", "params", "feasible"} <= set(rows[0]["user_attrs"])


def test_cli_trials_formats(searched: tuple[Path, str]) -> None:
    _, url = searched
    as_json = invoke_cli("trials", "--study-name", NAME, "--storage", url, "--format", "json")
    rows = json.loads(as_json.stdout)
    assert len(rows) == 16 and all("subnet" in row for row in rows)
    listed = invoke_cli("trials", "--study-name", NAME, "--storage", url, "--pareto", "--format", "json")
    pareto = json.loads(listed.stdout)
    assert pareto and all(row["feasible"] for row in pareto)
    csv_text = invoke_cli("trials", "--study-name", NAME, "--storage", url, "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("number,state,feasible,top1")
    table = invoke_cli("studies", "--storage", url).stdout
    assert NAME in table and "16" in table


def test_dashboard_serves_study_and_shows_feasibility(searched: tuple[Path, str]) -> None:
    from optnas.studies.dashboard import make_app

    _, url = searched

    class _Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = make_server("127.0.0.1", 0, make_app(url), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        summaries = json.load(urllib.request.urlopen(f"{base}/api/studies"))["study_summaries"]
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == NAME)
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{study_id}"))
        assert detail["objective_names"] == ["top1", "params"]
        trials = detail["trials"]
        assert len(trials) == 16
        study = _study(url)
        for shown in trials:
            stored = study.trials[shown["number"]]
            infeasible = not stored.user_attrs["feasible"]
            assert bool(shown["constraints"]) and (max(shown["constraints"]) > 0) == infeasible
        assert detail["artifacts"] is not None
    finally:
        server.shutdown()


def test_search_refuses_existing_name_and_leaves_db_untouched(searched: tuple[Path, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder, url = searched
    before = _dump(folder / "study.db")
    monkeypatch.chdir(folder)
    # In this process: an uncaught exception would be raised here, not printed as a traceback.
    result = invoke_cli(*SEARCH, "--storage", url, "--save", str(folder / "run"))
    assert result.returncode == 2
    assert "already exists" in result.stderr and "optnas resume" in result.stderr
    assert "Traceback" not in result.stderr
    assert _dump(folder / "study.db") == before


def test_resume_refuses_contradictions_and_leaves_db_untouched(searched: tuple[Path, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder, url = searched
    before = _dump(folder / "study.db")
    monkeypatch.chdir(folder)
    result = invoke_cli("resume", "--study-name", NAME, "--storage", url, "--dataset", "cifar100",
                        "--sec-obj", "none", "--quiet")
    assert result.returncode == 2
    assert "--dataset: stored 'cifar10', given 'cifar100'" in result.stderr
    assert "--sec-obj" in result.stderr
    assert _dump(folder / "study.db") == before
    missing = invoke_cli("resume", "--study-name", "nope", "--storage", url)
    assert missing.returncode == 2 and "no study named 'nope'" in missing.stderr


class Resuming(NamedTuple):
    """A study searched in this process, being resumed by `optnas resume` in another one."""

    url: str
    before: list[optuna.trial.FrozenTrial]
    process: Forked

    def finish(self) -> str:
        """Wait for the resume to exit 0; return its stderr."""
        _, err = self.process.communicate(timeout=600)
        assert self.process.returncode == 0, err
        return err


@pytest.fixture(scope="module", autouse=True)
def resuming(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Resuming]]:
    """A 16-trial study of the random and of the NSGA-II sampler, each being resumed with --iterations 4.

    The first part runs in this process, the resume in another one that imports optnas itself
    (forked from the tests' forkserver, which imported only torch and the other libraries:
    a fresh interpreter spent 5 s of CPU on them): nothing but the storage carries over.
    Both start with this module's first test, so that the two processes run beside each other
    and beside the tests in between; the resume tests wait for them. Nothing is started when
    neither resume test is selected.
    """
    if not selected(request, test_resume_continues_without_reevaluating, test_resume_keeps_the_nsga2_generations):
        yield {}
        return
    resume_args = {"random": ("--search-space", "nasbench201"), "nsga2": ()}
    started: dict[str, Resuming] = {}
    try:
        for sampler, extra in resume_args.items():
            folder = tmp_path_factory.mktemp(f"resume-{sampler}")
            url = f"sqlite:///{folder / 'study.db'}"
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(folder)
                first = invoke_cli(*SEARCH, "--storage", url, "--save", str(folder / "run"), "--sampler", sampler)
            assert first.returncode == 0, first.stderr
            before = _study(url).trials
            process = Forked(["-m", "optnas.cli", "resume", "--study-name", NAME, "--storage", url,
                              "--iterations", "4", "--quiet", *extra], folder)
            started[sampler] = Resuming(url, before, process)
        yield started
    finally:
        for resume in started.values():
            if resume.process.returncode is None:  # its test failed or did not run
                resume.process.kill()
                resume.process.communicate()


def test_resume_continues_without_reevaluating(resuming: dict[str, Resuming]) -> None:
    url, before, _ = resuming["random"]
    resuming["random"].finish()
    numbers_before = {t.number for t in before}
    study = _study(url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 8 + 4 * 4
    assert numbers_before < {t.number for t in study.trials}
    assert study.user_attrs["config"]["iterations"] == 4
    evaluated = [json.dumps(t.user_attrs["subnet"], sort_keys=True)
                 for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated)), "an architecture was evaluated twice"
    assert "iteration:0004" in study.user_attrs
    assert isinstance(study.sampler, optuna.samplers.RandomSampler)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp", "random"])
def test_every_baseline_sampler_runs(sampler: str, tmp_path: Path) -> None:
    from optnas.config import SearchConfig
    from optnas.studies.search import start_search

    config = SearchConfig(search_space="nasbench201", dataset="cifar10", sec_obj="params", n_doe=4,
                          iterations=2, n_iter=3, sampler=sampler, save=str(tmp_path / "run")).validate()
    study = start_search(config, f"sqlite:///{tmp_path / 's.db'}", progress=False)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 10


def test_search_on_postgresql(postgres_url: str, unique_name: str, tmp_path: Path) -> None:
    from optnas.config import SearchConfig
    from optnas.studies.search import start_search

    config = SearchConfig(search_space="nasbench201", dataset="cifar10", sec_obj="params", n_doe=4,
                          iterations=1, n_iter=2, save=str(tmp_path / "run")).validate()
    start_search(config, postgres_url, unique_name, progress=False)
    try:
        study = optuna.load_study(study_name=unique_name, storage=postgres_url, sampler=optuna.samplers.RandomSampler())
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 6
        assert all("params" in t.constraints or not t.constraints for t in study.trials)
    finally:
        optuna.delete_study(study_name=unique_name, storage=postgres_url)


def test_failed_evaluation_is_a_fail_trial_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optnas.config import SearchConfig
    from optnas.evaluation.candidate import CandidateEvaluator
    from optnas.studies.search import start_search

    original = CandidateEvaluator.evaluate
    calls = []

    def flaky(self: CandidateEvaluator, subnet: dict) -> tuple:
        calls.append(subnet)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, subnet)

    monkeypatch.setattr(CandidateEvaluator, "evaluate", flaky)
    config = SearchConfig(search_space="nasbench201", dataset="cifar10", sec_obj="params", n_doe=4,
                          iterations=1, n_iter=2, sampler="random", save=str(tmp_path / "run")).validate()
    study = start_search(config, f"sqlite:///{tmp_path / 's.db'}", progress=False)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1
    assert failed[0].user_attrs["fail_reason"] == "RuntimeError: CUDA out of memory (simulated)"
    assert "subnet" in failed[0].user_attrs
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == config.budget


def test_resume_keeps_the_nsga2_generations(resuming: dict[str, Resuming]) -> None:
    url, trials_before, _ = resuming["nsga2"]
    generation = "NSGAIISampler:generation"
    before = max(t.system_attrs[generation] for t in trials_before)
    assert before >= 2
    resuming["nsga2"].finish()
    after = [t.system_attrs[generation] for t in _study(url).trials[16:] if generation in t.system_attrs]
    assert after and min(after) >= before
