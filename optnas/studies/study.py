"""Creating, guarding and resuming search studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from optnas import __version__
from optnas.config import RUNTIME_OPTIONS, SearchConfig
from optnas.data.catalog import check_classes
from optnas.figures import FIGURES
from optnas.studies.errors import StudyError, StudyExistsError, StudyOptionError
from optnas.studies.sampling import make_sampler
from optnas.studies.storage import open_storage

CONFIG_ATTR = "config"
VERSION_ATTR = "optnas_version"
ARTIFACT_DIR_ATTR = "artifact_dir"
CONSTRAINTS_ATTR = "constraint_names"
# The dataset's class names in label order (a folder dataset's class folders), where known.
CLASSES_ATTR = "classes"


def ensure_new_study_name(storage_url: str, name: str) -> optuna.storages.BaseStorage:
    """Refuse a study name that the storage already holds; return the opened storage.

    Args:
        storage_url: the storage URL.
        name: the study name.
    """
    storage = open_storage(storage_url)
    if name in optuna.get_all_study_names(storage):
        raise StudyExistsError(name)
    return storage


def create_search_study(config: SearchConfig, storage_url: str, study_name: str | None = None) -> optuna.Study:
    """Create a new study for a search and store its configuration.

    Args:
        config: the validated search configuration.
        storage_url: the storage URL.
        study_name: the study name (default: derived from the configuration).
    """
    name = study_name or config.default_study_name()
    storage = ensure_new_study_name(storage_url, name)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=[FIGURES[objective].direction for objective in config.objectives],
        sampler=make_sampler(config),
    )
    study.set_metric_names(config.objectives)
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    study.set_user_attr(VERSION_ATTR, __version__)
    study.set_user_attr(CONSTRAINTS_ATTR, list(config.constraint_bounds))
    study.set_user_attr(ARTIFACT_DIR_ATTR, str((Path(config.save) / "artifacts").resolve()))
    names = config.class_names()
    if names is not None:
        study.set_user_attr(CLASSES_ATTR, names)
    return study


def resume_search_study(
    storage_url: str, study_name: str, overrides: dict[str, Any] | None = None
) -> tuple[optuna.Study, SearchConfig]:
    """Load a study with the sampler its stored configuration names, refusing contradictions.

    Args:
        storage_url: the storage URL.
        study_name: the study to resume.
        overrides: options given on the command line. Runtime options (iterations, device,
            workers, save) replace the stored ones; any other option must equal the stored one.
    """
    storage = open_storage(storage_url)
    if study_name not in optuna.get_all_study_names(storage):
        raise StudyError(f"no study named '{study_name}' in this storage; start it with `optnas search`")
    values = storage.get_study_user_attrs(storage.get_study_id_from_name(study_name)).get(CONFIG_ATTR)
    if values is None:
        raise StudyError(f"study '{study_name}' was not created by optnas (no stored configuration)")
    config = SearchConfig.from_dict(values)
    overrides = dict(overrides or {})
    contradictions = {
        name: (getattr(config, name), value)
        for name, value in sorted(overrides.items())
        if name not in RUNTIME_OPTIONS and getattr(config, name) != value
    }
    if contradictions:
        # One "{option}: stored {stored_i!r}, given {given_i!r}" per option, formatted by StudyOptionError.
        listed, values = [], {}
        for index, (name, (stored, given)) in enumerate(contradictions.items()):
            listed.append(f"{{{name}}}: stored {{stored_{index}!r}}, given {{given_{index}!r}}")
            values.update({f"stored_{index}": stored, f"given_{index}": given})
        raise StudyOptionError("the options contradict study '{study}': " + "; ".join(listed), study=study_name,
                               **values)
    runtime = {name: value for name, value in overrides.items() if name in RUNTIME_OPTIONS}
    config = SearchConfig.from_dict({**config.to_dict(), **runtime}).validate()
    # Optuna 5 gives load_study a TPE sampler by default: pass the stored one explicitly. GA
    # samplers keep their generations in the storage, so the history carries over.
    # A folder tree edited since the search began would change what every label means.
    check_classes(config.dataset, config.data, storage.get_study_user_attrs(
        storage.get_study_id_from_name(study_name)).get(CLASSES_ATTR))
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=make_sampler(config))
    if runtime:
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
    return study, config
