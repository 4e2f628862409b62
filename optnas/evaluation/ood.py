"""Out-of-distribution evaluation: error per corruption and severity, and the mean corruption error.

Two sources of corrupted images: the held-out test split of any dataset corrupted on the fly
(:mod:`optnas.data.corruptions`), or the published CIFAR-10-C / CIFAR-100-C ``.npy`` files. Images
are normalised with the dataset's own statistics, as in training. Results of a study's trial
are kept in the study by :mod:`optnas.studies.ood`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from optnas.artifacts import load_checkpoint, read_subnet_file
from optnas.data.catalog import DataError, mean_std, n_classes_of
from optnas.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from optnas.data.datasets import ImageSet, TensorImageSet, load_dataset
from optnas.errors import OptionError
from optnas.networks.inference import evaluate
from optnas.networks.supernet import build_supernet, extract_subnet

CIFAR_C = {"cifar10c": ("cifar10", "CIFAR-10-C", 10), "cifar100c": ("cifar100", "CIFAR-100-C", 100)}
# Images corrupted and scored at once; bounds the memory at large resolutions.
_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class OODRequest:
    """What an OOD evaluation is asked for: which corrupted images, how many, where it runs.

    Args:
        dataset: ``cifar10c`` / ``cifar100c`` to read the published files from ``data``, else
            the dataset whose test split is corrupted on the fly; None: a trial's study dataset,
            digits for a ``net.subnet`` file.
        data: the dataset folder (the folder of the CIFAR-C files).
        corruptions: corruption names.
        severities: severities, 1 to 5.
        n_images: only the first test images (of each severity, for CIFAR-C).
        seed: seeds the on-the-fly corruptions.
        device: where to run.
        progress: show progress bars.
    """

    dataset: str | None = None
    data: str | None = None
    corruptions: tuple[str, ...] = CORRUPTIONS
    severities: tuple[int, ...] = SEVERITIES
    n_images: int | None = None
    seed: int = 0
    device: str | torch.device = "cpu"
    progress: bool = False

    def check(self) -> None:
        """Refuse unknown corruptions and severities outside 1..5 (see :func:`check_choice`)."""
        check_choice(self.corruptions, self.severities)


def load_cifar_c(
    name: str, root: str | Path, corruptions: tuple[str, ...] = CORRUPTIONS
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read CIFAR-10-C / CIFAR-100-C: ``<corruption>.npy`` and ``labels.npy``.

    Each corruption file holds 5·N uint8 images 32×32×3, severity 1 first; ``labels.npy``
    holds their 5·N labels.

    Args:
        name: ``cifar10c`` or ``cifar100c``.
        root: the folder holding the files, or its parent holding ``CIFAR-10-C/`` (``CIFAR-100-C/``).
        corruptions: the corruptions to read.

    Returns:
        Per corruption a memory-mapped array 5×N×32×32×3 (severity, image), and the N labels.
    """
    if name not in CIFAR_C:
        raise DataError(f"unknown corrupted dataset {name!r}; choose {' or '.join(CIFAR_C)}")
    _, folder_name, n_classes = CIFAR_C[name]
    root = Path(root).expanduser()
    folder = root / folder_name if (root / folder_name).is_dir() else root
    expected = ["labels.npy"] + [f"{c}.npy" for c in corruptions]
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{name}: {folder} lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
                        f"(expected {folder_name}/<corruption>.npy and labels.npy)")
    try:
        labels = np.load(folder / "labels.npy", allow_pickle=False)
        arrays = {c: np.load(folder / f"{c}.npy", mmap_mode="r", allow_pickle=False) for c in corruptions}
    except ValueError as error:
        raise DataError(f"{name}: {folder} holds a file that is not a plain .npy array ({error})") from None
    if labels.ndim != 1 or len(labels) % len(SEVERITIES):
        raise DataError(f"{name}: labels.npy should hold 5·N labels, got shape {labels.shape}")
    n = len(labels) // len(SEVERITIES)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"{name}: labels.npy has labels outside 0..{n_classes - 1}")
    for corruption, array in arrays.items():
        if array.dtype != np.uint8 or array.shape[1:] != (32, 32, 3) or len(array) != len(labels):
            raise DataError(f"{name}: {corruption}.npy should be uint8 {len(labels)}×32×32×3, "
                            f"got {array.dtype} {array.shape}")
        arrays[corruption] = array.reshape(len(SEVERITIES), n, 32, 32, 3)
    return arrays, labels[:n].astype(np.int64)


def corruption_errors(model: nn.Module, test: ImageSet, request: OODRequest, *, resolution: int) -> dict[str, Any]:
    """Corrupt a test split on the fly and return the top-1 error (%) per corruption and severity.

    Images are prepared at ``resolution`` as for evaluation, corrupted in [0, 1], then
    normalised with the split's own statistics.

    Args:
        model: the network.
        test: the clean test images (the first ``request.n_images`` of them are used).
        request: the corruptions, severities, number of images, seed (each (corruption,
            severity) its own stream), device and progress bars; its dataset is ``test``'s.
        resolution: input resolution (the corruptions apply at this size).
    """
    request.check()
    corruptions, severities, seed, device = request.corruptions, request.severities, request.seed, request.device
    if request.n_images is not None:
        test = test.subset(range(min(request.n_images, len(test))))
    mean = torch.tensor(test.mean).view(1, 3, 1, 1)
    std = torch.tensor(test.std).view(1, 3, 1, 1)
    clean_correct, counts = 0.0, {}
    n_chunks = -(-len(test) // _CHUNK)
    with tqdm(total=n_chunks * len(corruptions) * len(severities), desc="corruptions",
              disable=not request.progress) as bar:
        for start in range(0, len(test), _CHUNK):
            part = test.subset(range(start, min(start + _CHUNK, len(test))))
            normalised, labels = part.tensors(resolution)
            clean = (normalised * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
            clean_correct += _correct(model, clean, labels, test, resolution, device)
            for name in corruptions:
                for severity in severities:
                    # One stream per (chunk, corruption, severity): a subset of corruptions
                    # gives the same images as the full run.
                    rng = np.random.default_rng([seed, start, CORRUPTIONS.index(name), severity])
                    images = corrupt(clean, name, severity, rng)
                    counts[name, severity] = counts.get((name, severity), 0.0) + _correct(
                        model, images, labels, test, resolution, device)
                    bar.update()
    clean_error = 100.0 - 100.0 * clean_correct / len(test)
    return _summary(counts, len(test), corruptions, severities, clean_error=clean_error)


def cifar_c_errors(model: nn.Module, request: OODRequest, *, resolution: int) -> dict[str, Any]:
    """Return the top-1 error (%) per corruption and severity on the published CIFAR-C files.

    Args:
        model: the network (trained on CIFAR-10 for cifar10c, CIFAR-100 for cifar100c).
        request: its ``dataset`` (``cifar10c`` or ``cifar100c``), ``data`` (the folder of the
            ``.npy`` files, see :func:`load_cifar_c`), corruptions, severities, ``n_images`` (the
            first images of each severity only), device and progress bar.
        resolution: input resolution (images are resized from 32).
    """
    request.check()
    name, corruptions, severities, device = request.dataset, request.corruptions, request.severities, request.device
    arrays, labels = load_cifar_c(name, request.data, corruptions)
    n = len(labels) if request.n_images is None else min(request.n_images, len(labels))
    mean, std = mean_std(CIFAR_C[name][0])
    counts = {}
    with tqdm(total=len(corruptions) * len(severities), desc=name, disable=not request.progress) as bar:
        for corruption in corruptions:
            for severity in severities:
                images = torch.from_numpy(np.array(arrays[corruption][severity - 1, :n]))
                split = TensorImageSet(images.permute(0, 3, 1, 2), torch.from_numpy(labels[:n]),
                                       CIFAR_C[name][2], mean, std, cache_size=0)
                accuracy = evaluate(model, split, resolution=resolution, device=device)
                counts[corruption, severity] = accuracy * n / 100
                bar.update()
    return _summary(counts, n, corruptions, severities)


def _correct(model: nn.Module, images: np.ndarray, labels: torch.Tensor, like: ImageSet, resolution: int,
             device: str | torch.device) -> float:
    split = TensorImageSet(torch.from_numpy(images).permute(0, 3, 1, 2), labels.cpu(), like.n_classes,
                           like.mean, like.std, cache_size=0)
    return evaluate(model, split, resolution=resolution, device=device) * len(labels) / 100


def _summary(counts: dict[tuple[str, int], float], n: int, corruptions: tuple[str, ...],
             severities: tuple[int, ...], clean_error: float | None = None) -> dict[str, Any]:
    errors: dict[str, dict[str, float]] = {}
    for name in corruptions:
        per = {str(s): 100.0 - 100.0 * counts[name, s] / n for s in severities}
        errors[name] = {**per, "mean": float(np.mean(list(per.values())))}
    result: dict[str, Any] = {"n_images": n, "errors": errors,
                              "mce": float(np.mean([e["mean"] for e in errors.values()]))}
    if clean_error is not None:
        result["clean_error"] = clean_error
    return result


def check_choice(corruptions: tuple[str, ...], severities: tuple[int, ...]) -> None:
    """Refuse unknown corruptions and severities outside 1..5.

    Args:
        corruptions: corruption names.
        severities: severities.
    """
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown or not corruptions:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {', '.join(CORRUPTIONS)}")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise ValueError(f"severities must lie in 1..5, got {list(severities)}")


def evaluate_subnet_ood(subnet_file: str | Path, weights: str | Path, request: OODRequest) -> dict[str, Any]:
    """Return the OOD errors of a ``net.subnet`` with its weights (``ckpt.pth``: a dict with ``state_dict``).

    Args:
        subnet_file: the architecture (JSON).
        weights: its trained weights.
        request: what to evaluate it on (the dataset digits unless it names one), where.
    """
    request.check()
    request = dataclasses.replace(request, dataset=request.dataset or "digits")
    dataset = request.dataset
    subnet = read_subnet_file(subnet_file)
    if subnet.has_exits:
        raise ValueError(f"{subnet_file}: OOD evaluation takes single-exit (mobilenetv3) networks")
    state = load_checkpoint(weights).get("state_dict")
    if state is None:
        raise ValueError(f"{weights}: the checkpoint has no 'state_dict'")
    n_classes = CIFAR_C[dataset][2] if dataset in CIFAR_C else n_classes_of(dataset, request.data)
    model = extract_subnet(build_supernet(n_classes, subnet["w"]), subnet)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{weights}: not the weights of {subnet_file} ({str(error).splitlines()[0]})") from None
    model.to(request.device)
    test = None if dataset in CIFAR_C else load_dataset(dataset, request.data).test
    result = ood_errors(model, request, resolution=subnet["r"], test=test)
    result.update({"subnet": subnet, "resolution": subnet["r"]})
    return result


def ood_errors(model: nn.Module, request: OODRequest, *, resolution: int, test: ImageSet | None) -> dict[str, Any]:
    """Return a network's OOD errors on the published CIFAR-C files when ``request.dataset`` names
    them, else on ``test`` corrupted on the fly; ``source`` in the result says which.

    Args:
        model: the network.
        request: what to evaluate it on; its ``dataset`` is ``cifar10c`` / ``cifar100c``, or the
            name of the dataset ``test`` comes from.
        resolution: its input resolution.
        test: the clean test split (unused for CIFAR-C).
    """
    dataset = request.dataset
    if dataset in CIFAR_C:
        if request.data is None:
            raise OptionError("{dataset} {value} reads the published .npy files: pass {data}", value=dataset)
        result = cifar_c_errors(model, request, resolution=resolution)
        result["source"] = f"{dataset} files in {request.data}"
        return result
    result = corruption_errors(model, test, request, resolution=resolution)
    result["source"] = f"{dataset} test split, corrupted on the fly (seed {request.seed})"
    return result


def format_ood(result: dict[str, Any]) -> str:
    """Render an OOD result as a table: one row per corruption, one column per severity.

    Args:
        result: what :func:`corruption_errors` or :func:`cifar_c_errors` returned.
    """
    severities = [key for key in next(iter(result["errors"].values())) if key != "mean"]
    lines = [f"{'corruption':18s}" + "".join(f"{'s' + s:>8s}" for s in severities) + f"{'mean':>8s}"]
    for name, errors in result["errors"].items():
        lines.append(f"{name:18s}" + "".join(f"{errors[s]:8.2f}" for s in severities) + f"{errors['mean']:8.2f}")
    footer = f"mCE {result['mce']:.2f} % on {result['n_images']} images"
    if "clean_error" in result:
        footer += f"; clean error {result['clean_error']:.2f} %"
    return "\n".join([*lines, footer])
