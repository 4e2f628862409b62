"""Latency tables' sum model and latency as an objective and a constraint of searches.

Tables here have entries set by hand, so every figure is known without timing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optnas.latency.table import (
    TABLE_FORMAT,
    LatencyTable,
    LatencyTableError,
    backbone_layers,
    exit_layers,
    layer_key,
    space_layers,
)
from optnas.spaces.eemobilenetv3 import EEMobileNetV3Space
from optnas.spaces.mobilenetv3 import MobileNetV3Space
from optnas.spaces.nasbench201 import lookup
from tests.conftest import invoke_cli, tiny_cifar10_options


def _table(keys: list[str], seed: int = 0, overhead: float = 0.25, n_classes: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    return {"format": TABLE_FORMAT, "n_classes": n_classes, "overhead_ms": overhead,
            "layers": {key: {"ms": float(rng.uniform(0.01, 1.0))} for key in keys}}


def _write_table(path: Path, widths=(1.0,), resolutions=(32,), exits=False, **kwargs) -> Path:
    path.write_text(json.dumps(_table(list(space_layers(widths, resolutions, 10, exits)), **kwargs)))
    return path


def _search(tmp_path: Path, name: str, *args: str) -> tuple[optuna.Study, list[optuna.trial.FrozenTrial]]:
    """Run a search through the CLI; return its study and completed trials."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    result = invoke_cli("search", "--storage", url, "--study-name", name, "--save", str(tmp_path / "run"), "--quiet",
                        *args)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name=name, storage=url)
    return study, study.get_trials(states=(TrialState.COMPLETE,))


def test_prediction_is_the_sum_of_the_layers_plus_the_overhead() -> None:
    space = MobileNetV3Space(resolutions=[32, 48])
    data = _table(list(space_layers([1.0], [32, 48], 10)))
    table = LatencyTable(data)
    for subnet in space.sample(np.random.default_rng(1), 20):
        keys = [layer_key(spec) for spec in backbone_layers(subnet, 10)]
        # The stem, one entry per active layer, the head.
        assert len(keys) == 2 + sum(subnet["d"])
        expected = sum(data["layers"][key]["ms"] for key in keys) + 0.25
        assert table.predict(subnet) == pytest.approx(expected, rel=1e-12)


def test_every_layer_of_a_space_has_a_key() -> None:
    specs = space_layers([1.0], [32], 10)
    # Per resolution: the stem, 5 stages x (first, later) x 3 kernels x 3 expand ratios, the head.
    assert len(specs) == 1 + 5 * 2 * 9 + 1
    space = MobileNetV3Space(resolutions=[32])
    for subnet in space.sample(np.random.default_rng(2), 50):
        assert {layer_key(spec) for spec in backbone_layers(subnet, 10)} <= set(specs)


def test_exit_latencies_add_the_heads_passed() -> None:
    space = EEMobileNetV3Space(resolutions=[32])
    data = _table(list(space_layers([1.0], [32], 10, exits=True)))
    table = LatencyTable(data)
    ms = {key: entry["ms"] for key, entry in data["layers"].items()}
    subnet = space.canonical({**space.largest(), "exits": [1, 0, 1, 0], "epsilon": [0.5] * 4})
    backbone = backbone_layers(subnet, 10)
    heads = [ms[layer_key(spec)] for spec in exit_layers(subnet, 10)]
    through = [sum(ms[layer_key(spec)] for spec in backbone[:-1] if spec.get("stage", -1) <= stage)
               for stage in (0, 2)]
    expected = [through[0] + heads[0], through[1] + heads[0] + heads[1],
                sum(ms[layer_key(spec)] for spec in backbone) + sum(heads)]
    assert table.exit_latencies(subnet) == pytest.approx([value + 0.25 for value in expected])
    assert table.predict(subnet) == pytest.approx(expected[-1] + 0.25)


def test_fastest_is_the_lowest_prediction() -> None:
    resolutions = [32, 40]
    table = LatencyTable(_table(list(space_layers([1.0], resolutions, 10)), seed=3))
    fastest, subnet = table.fastest([1.0], resolutions)
    assert table.predict(subnet) == pytest.approx(fastest)
    space = MobileNetV3Space(resolutions=resolutions)
    assert fastest <= min(table.predict(s) for s in space.sample(np.random.default_rng(4), 3000))
    # Changing any one gene of the fastest subnet never makes it faster.
    for index, values in enumerate(space.choices()):
        vector = space.to_vector(subnet)
        for choice in range(len(values)):
            vector[index] = choice
            assert table.predict(space.from_vector(vector)) >= fastest - 1e-12


def test_tables_that_cannot_serve_a_space_are_refused(tmp_path: Path) -> None:
    table = LatencyTable.load(_write_table(tmp_path / "lut.json"))
    with pytest.raises(LatencyTableError, match=r"no entry stem-w1\.0-r64"):
        table.check_covers([1.0], [32, 64], 10)
    with pytest.raises(LatencyTableError, match=r"built for 10 classes.*n_classes 100"):
        table.check_covers([1.0], [32], 100)
    with pytest.raises(LatencyTableError, match="no entry exit-"):
        table.check_covers([1.0], [32], 10, exits=True)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(LatencyTableError, match="not an optnas latency table"):
        LatencyTable.load(tmp_path / "bad.json")
    with pytest.raises(LatencyTableError, match="no such latency table"):
        LatencyTable.load(tmp_path / "missing.json")


def test_nasbench201_latency_objective_and_constraint(tmp_path: Path) -> None:
    study, complete = _search(tmp_path, "nb", "--search-space", "nasbench201", "--dataset", "cifar10",
                              "--sec-obj", "latency", "--lmax", "20", "--n-doe", "10", "--iterations", "1",
                              "--n-iter", "5", "--predictor", "rbf")
    assert len(complete) == 15
    for trial in complete:
        figures = lookup(trial.user_attrs["subnet"], "cifar10", 0)
        assert trial.values[1] == pytest.approx(figures["latency"])
        assert trial.user_attrs["latency"] == pytest.approx(figures["latency"])
        assert trial.constraints["latency"] == pytest.approx(figures["latency"] - 20)
    assert all(t.user_attrs["latency"] <= 20 for t in study.best_trials)


def test_search_predicts_latency_from_the_table(supernet_file: Path, tiny_cifar10: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lut = _write_table(tmp_path / "lut.json")
    table = LatencyTable.load(lut)
    fastest, _ = table.fastest([1.0], [32])
    largest = table.predict(MobileNetV3Space(resolutions=[32]).largest())
    bound = fastest + 0.5 * (largest - fastest)
    monkeypatch.chdir(tmp_path)
    study, complete = _search(
        tmp_path, "lat", "--supernet-path", str(supernet_file), "--n-doe", "3", "--iterations", "1", "--n-iter", "1",
        "--n-epochs", "0", *tiny_cifar10_options(tiny_cifar10), "--sec-obj", "latency", "--lmax", f"{bound}",
        "--latency-table", str(lut), "--predictor", "rbf",
    )
    assert len(complete) == 4
    for trial in complete:
        predicted = table.predict(trial.user_attrs["subnet"])
        assert trial.values[1] == pytest.approx(predicted)
        assert trial.constraints["latency"] == pytest.approx(predicted - bound)
    assert study.best_trials and all(t.user_attrs["latency"] <= bound for t in study.best_trials)
    shown = invoke_cli("trials", "--storage", f"sqlite:///{tmp_path / 'search.db'}", "--study-name", "lat",
                       "--format", "json")
    assert all("latency" in row for row in json.loads(shown.stdout))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sec-obj", "latency"], "needs --latency-table"),
        (["--lmax", "5"], "needs --latency-table"),
        (["--sec-obj", "avg_latency", "--latency-table", "LUT"], "needs --search-space eemobilenetv3"),
        (["--sec-obj", "latency", "--latency-table", "LUT", "--lr", "32", "--ur", "64", "--rstep", "32"],
         "no entry stem-w1.0-r64"),
        (["--lmax", "0.001", "--latency-table", "LUT"], "no architecture satisfies --lmax 0.001"),
        (["--search-space", "nasbench201", "--dataset", "cifar10", "--sec-obj", "params", "--latency-table", "LUT"],
         "nasbench201's latency is its table's column"),
        (["--latency-threads", "0", "--latency", "measure"], "--latency-threads must be at least 1"),
    ],
)
def test_latency_options_are_checked_before_any_work(args: list[str], message: str, tmp_path: Path) -> None:
    lut = str(_write_table(tmp_path / "lut.json"))
    args = [lut if arg == "LUT" else arg for arg in args]
    result = invoke_cli("search", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study-name", "x",
                        "--save", str(tmp_path / "run"), "--quiet", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_profile_adds_the_predicted_latency(tmp_path: Path) -> None:
    lut = _write_table(tmp_path / "lut.json")
    subnet = MobileNetV3Space(resolutions=[32]).sample(np.random.default_rng(5), 1)[0]
    (tmp_path / "net.subnet").write_text(json.dumps(subnet))
    result = invoke_cli("profile", str(tmp_path / "net.subnet"), "--latency-table", str(lut), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["latency"] == pytest.approx(LatencyTable.load(lut).predict(subnet))


def test_measured_latency_search(supernet_file: Path, tiny_cifar10: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _, complete = _search(
        tmp_path, "measured", "--supernet-path", str(supernet_file), "--n-doe", "3", "--iterations", "1",
        "--n-iter", "1", "--n-epochs", "0", *tiny_cifar10_options(tiny_cifar10), "--sec-obj", "latency",
        "--latency", "measure", "--latency-runtime", "torch", "--predictor", "rbf", "--sec-predictor", "rbf",
    )
    assert len(complete) == 4
    for trial in complete:
        assert 0 < trial.user_attrs["latency"] <= trial.user_attrs["latency_p90"]
        assert trial.values[1] == trial.user_attrs["latency"]


def test_select_times_the_chosen_networks_of_a_bounded_search(tmp_path: Path) -> None:
    from optnas.config import SearchConfig
    from optnas.studies.selection import export_selection, select_trials
    from optnas.studies.study import CONFIG_ATTR

    lut = _write_table(tmp_path / "lut.json")
    config = SearchConfig(sec_obj="latency", lmax=4.0, latency_table=str(lut), latency_runtime="torch").validate()
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    space = MobileNetV3Space(resolutions=[32])
    for index, subnet in enumerate(space.sample(np.random.default_rng(6), 3)):
        study.add_trial(optuna.trial.create_trial(
            values=[90.0 + index, 1.0 + index], params={}, distributions={},
            user_attrs={"subnet": subnet, "top1": 90.0 + index, "latency": 1.0 + index},
        ))
    rows, check = export_selection(study, select_trials(study, 3, "latency"), "latency", tmp_path / "chosen")
    measured = [row["measured_latency"] for row in rows]
    assert len(measured) == 3 and all(value > 0 for value in measured)
    assert check == {"bound": 4.0, "met": sum(value <= 4.0 for value in measured), "n": 3,
                     "runtime": "torch", "threads": 1}
    assert "measured_latency" in (tmp_path / "chosen" / "selection.csv").read_text().splitlines()[0]


def test_latency_commands_build_a_table_a_search_accepts(tmp_path: Path) -> None:
    lut = tmp_path / "lut.json"
    built = invoke_cli("latency", "table", "--runtime", "torch", "--calibration", "2", "--out", str(lut), "--quiet")
    assert built.returncode == 0, built.stderr
    table = LatencyTable.load(lut)
    assert table.metadata["runtime"] == "torch" and table.metadata["threads"] == 1
    table.check_covers([1.0], [32], 10)
    subnet = MobileNetV3Space(resolutions=[32]).largest()
    (tmp_path / "net.subnet").write_text(json.dumps(subnet))
    timed = invoke_cli("latency", "measure", str(tmp_path / "net.subnet"), "--runtime", "torch", "--json")
    assert timed.returncode == 0, timed.stderr
    assert set(json.loads(timed.stdout)) == {"latency_ms", "p90_ms", "repeats"}
    missing = invoke_cli("latency", "measure", str(tmp_path / "none.subnet"))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].endswith("none.subnet: no such file")


def test_latency_layers_writes_the_device_folder(tmp_path: Path) -> None:
    result = invoke_cli("latency", "layers", str(tmp_path / "dev"), "--calibration", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "dev" / "manifest.json").read_text())
    assert set(manifest["layers"]) == set(space_layers([1.0], [32], 10))
    assert (tmp_path / "dev" / "device.py").is_file()


def test_early_exit_search_weighs_exit_latencies_by_exit_ratios(
    supernet_file: Path, tiny_cifar10: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lut = _write_table(tmp_path / "lut.json", exits=True)
    table = LatencyTable.load(lut)
    monkeypatch.chdir(tmp_path)
    _, complete = _search(
        tmp_path, "ee", "--supernet-path", str(supernet_file), "--search-space", "eemobilenetv3",
        "--sec-obj", "avg_latency", "--latency-table", str(lut), "--predictor", "rbf", "--sec-predictor", "rbf",
        "--n-doe", "3", "--iterations", "0", "--n-epochs", "0", "--warmup-ee-epochs", "1", "--ee-epochs", "0",
        *tiny_cifar10_options(tiny_cifar10),
    )
    assert len(complete) == 3
    for trial in complete:
        attrs = trial.user_attrs
        assert attrs["exit_latency"] == pytest.approx(table.exit_latencies(attrs["subnet"]))
        assert attrs["latency"] == pytest.approx(table.predict(attrs["subnet"]))
        expected = sum(ratio * ms for ratio, ms in zip(attrs["exit_ratios"], attrs["exit_latency"]))
        assert trial.values[1] == pytest.approx(expected) == attrs["avg_latency"]


def test_resuming_without_the_table_is_refused(tmp_path: Path) -> None:
    lut = _write_table(tmp_path / "lut.json")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    created = invoke_cli("search", "--storage", url, "--study-name", "r", "--latency-table", str(lut),
                         "--sec-obj", "latency", "--save", str(tmp_path / "run"), "--create-only", "--quiet")
    assert created.returncode == 0, created.stderr
    lut.unlink()
    result = invoke_cli("worker", "--storage", url, "--study-name", "r", "--quiet")
    assert result.returncode == 2 and "no such latency table" in result.stderr
