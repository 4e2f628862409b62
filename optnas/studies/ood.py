"""OOD results kept in a study: ``optnas ood --trial`` and the ``mce`` column of ``optnas trials``.

A trial's result is kept as the study user attribute ``ood:trial:NNNNN`` and as a study
artifact ``ood-trial-NNNNN.json`` (a finished trial accepts neither).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from optnas import trial_attrs
from optnas.artifacts import SEARCH_CHECKPOINT, load_checkpoint, trial_dir
from optnas.config import SearchConfig
from optnas.errors import OptionError
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.evaluation.ood import CIFAR_C, OODRequest, ood_errors
from optnas.networks.inference import evaluate
from optnas.networks.supernet import extract_subnet
from optnas.studies.study import ARTIFACT_DIR_ATTR, CONFIG_ATTR
from optnas.studies.trials import OOD_ATTR_PREFIX


def store_ood(study: optuna.Study, number: int, result: dict[str, Any]) -> str:
    """Keep a trial's OOD result in its study: a study user attribute and a study artifact.

    Returns the attribute's key.

    Args:
        study: the study.
        number: the trial number.
        result: what :func:`corruption_errors` or :func:`cifar_c_errors` returned.
    """
    key = f"{OOD_ATTR_PREFIX}{number:05d}"
    study.set_user_attr(key, result)
    artifact_dir = study.user_attrs.get(ARTIFACT_DIR_ATTR)
    if artifact_dir and Path(artifact_dir).is_dir():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"ood-trial-{number:05d}.json"
            path.write_text(json.dumps(result, indent=2) + "\n")
            upload_artifact(artifact_store=FileSystemArtifactStore(artifact_dir), file_path=str(path),
                            study_or_trial=study, mimetype="application/json")
    return key


def evaluate_trial_ood(study: optuna.Study, number: int, request: OODRequest) -> dict[str, Any]:
    """Rebuild a trial's network and return (and store in the study) its OOD errors.

    The network is the trial's ``ckpt.pth`` when the search kept it (``--save-ckpt``), else
    it is rebuilt exactly as the search scored it (inherited weights, fine-tuning with the
    study's seed, BN recalibration); ``top1`` in the result is its validation accuracy then.

    Args:
        study: an optnas study.
        number: the trial number (a completed mobilenetv3 trial).
        request: what to evaluate it on, where; its ``dataset`` is ``cifar10c`` / ``cifar100c``
            to read the published files from ``data``, or None (or the study's dataset) to
            corrupt the study dataset's test split on the fly.
    """
    request.check()
    device = request.device
    if CONFIG_ATTR not in study.user_attrs:
        raise ValueError(f"study '{study.study_name}' was not created by optnas (no stored configuration)")
    config = SearchConfig.from_dict({**study.user_attrs[CONFIG_ATTR], "device": device})
    space = config.make_space()
    if not space.trains_networks or space.has_exits:
        raise ValueError(
            f"OOD evaluation needs trained single-exit networks; study '{study.study_name}' is {config.search_space}"
        )
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials or trials[0].state != optuna.trial.TrialState.COMPLETE:
        raise ValueError(f"study '{study.study_name}' has no completed trial {number}")
    subnet = space.canonical(trials[0].user_attrs[trial_attrs.SUBNET])
    evaluator = CandidateEvaluator(config, config.save)
    source = trials[0].user_attrs.get(trial_attrs.DUPLICATE_OF, number)
    checkpoint = trial_dir(config.save, study.study_name, source) / SEARCH_CHECKPOINT
    if checkpoint.is_file():
        model = extract_subnet(evaluator.supernet, subnet)
        model.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
        model.to(device)
        top1 = evaluate(model, evaluator.data.valid, resolution=subnet["r"], device=device)
    else:
        top1, model = evaluator.train(subnet)
    dataset = request.dataset
    if dataset not in (None, config.dataset, *CIFAR_C):
        raise OptionError("{dataset} {value}: a trial is evaluated on its study's dataset ({searched}, "
                          "corrupted on the fly) or on {files} files", value=dataset, searched=config.dataset,
                          files=" / ".join(CIFAR_C))
    if dataset in CIFAR_C and CIFAR_C[dataset][0] != config.dataset:
        raise OptionError("{dataset} {value} needs a study searched on {needed}, not {searched}", value=dataset,
                          needed=CIFAR_C[dataset][0], searched=config.dataset)
    request = dataclasses.replace(request, dataset=dataset or config.dataset)
    result = ood_errors(model, request, resolution=subnet["r"], test=evaluator.data.test)
    result.update({"trial": number, "top1": top1, "resolution": subnet["r"]})
    store_ood(study, number, result)
    return result
