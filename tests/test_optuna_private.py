"""Each use of Optuna's private API (optnas.optuna_private) against the installed Optuna: a
release that changes one fails here, by name, instead of breaking a search quietly."""

from __future__ import annotations

from pathlib import Path

import optuna
import sqlalchemy

from optnas.optuna_private import (
    LEGACY_CONSTRAINTS_KEY,
    rdb_tables,
    set_legacy_constraints,
    study_id,
    study_storage,
)


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(study_name="private", storage=f"sqlite:///{tmp_path / 'private.db'}",
                               directions=["maximize", "minimize"])


def test_legacy_constraints_are_the_list_optuna_itself_reads(tmp_path: Path) -> None:
    study = _study(tmp_path)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.set_constraint("macs", 0.5)
        set_legacy_constraints(trial, [0.5])
        return 1.0, 2.0

    study.optimize(objective, n_trials=1)
    frozen = study.trials[0]
    assert frozen.system_attrs[LEGACY_CONSTRAINTS_KEY] == [0.5]
    # Optuna's own reader of the legacy list: the key must be the one it looks for.
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    assert _CONSTRAINTS_KEY == LEGACY_CONSTRAINTS_KEY
    assert frozen.constraints["macs"] == 0.5


def test_study_storage_serves_artifact_metadata(tmp_path: Path) -> None:
    study = _study(tmp_path)
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path))
    trial = study.ask()
    note = tmp_path / "note.json"
    note.write_text("{}")
    optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(note), study_or_trial=trial)
    study.tell(trial, [1.0, 1.0])
    frozen = study.trials[0]
    metas = optuna.artifacts.get_all_artifact_meta(frozen, storage=study_storage(study))
    assert [meta.filename for meta in metas] == ["note.json"]


def test_rdb_tables_and_study_id_address_the_study_rows(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.optimize(lambda trial: (trial.suggest_float("x", 0, 1), 0.0), n_trials=2)
    engine, models = rdb_tables(optuna.load_study(study_name="private", storage=study_storage(study)))
    table = models.TrialModel.__table__
    with engine.connect() as connection:
        count = connection.execute(
            sqlalchemy.select(sqlalchemy.func.count()).select_from(table).where(table.c.study_id == study_id(study))
        ).scalar()
    assert count == 2


def test_holds_is_what_optuna_accepts() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from optnas.optuna_private import holds

    assert holds(IntDistribution(0, 10, step=2), 4) and not holds(IntDistribution(0, 10, step=2), 5)
    assert holds(FloatDistribution(0.0, 1.0), 0.5) and not holds(FloatDistribution(0.0, 1.0), 1.5)
    assert holds(CategoricalDistribution(["a", "b"]), "b") and not holds(CategoricalDistribution(["a", "b"]), "c")
    assert not holds(IntDistribution(0, 10), "x")
