"""Fine-tuning, BN recalibration, evaluation and candidate scoring."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from optnas.data.datasets import DataSplits
from optnas.evaluation.inheritance import evaluate_candidate
from optnas.networks.inference import evaluate, recalibrate_bn
from optnas.networks.supernet import extract_subnet
from optnas.spaces import MobileNetV3Space
from optnas.training.loop import fine_tune, seeded, set_seed
from optnas.training.recipes import FineTuneRecipe

RESOLUTION = 24


@pytest.fixture
def model(supernet: nn.Module) -> nn.Module:
    subnet = MobileNetV3Space(resolutions=(RESOLUTION,)).sample(np.random.default_rng(0), 1)[0]
    return extract_subnet(supernet, subnet)


def _batch_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    state_b = b.state_dict()
    for key, value in a.state_dict().items():
        assert torch.equal(value, state_b[key]), key


def test_fine_tune_for_zero_epochs_changes_nothing(model: nn.Module, tiny_digits: DataSplits) -> None:
    before = copy.deepcopy(model)
    fine_tune(model, tiny_digits.train, FineTuneRecipe(epochs=0), resolution=RESOLUTION)
    _assert_same_state(model, before)
    with pytest.raises(ValueError, match="epochs"):
        fine_tune(model, tiny_digits.train, FineTuneRecipe(epochs=-1), resolution=RESOLUTION)


def test_fine_tune_steps_the_cosine_schedule_per_epoch(
    model: nn.Module, tiny_digits: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    rates: list[float] = []
    step = torch.optim.SGD.step

    def recording_step(self: torch.optim.SGD, *args: Any, **kwargs: Any) -> Any:
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    fine_tune(model, tiny_digits.train, FineTuneRecipe(epochs=3, lr=0.1, batch_size=20), resolution=RESOLUTION)
    # 40 images in batches of 20: two steps per epoch, at that epoch's rate.
    expected = [0.05 * (1 + math.cos(math.pi * epoch / 3)) for epoch in range(3) for _ in range(2)]
    assert rates == pytest.approx(expected)


def test_fine_tune_is_reproducible_and_restores_the_mode(
    supernet: nn.Module, model: nn.Module, tiny_digits: DataSplits
) -> None:
    twin = copy.deepcopy(model)
    model.eval()
    twin.eval()
    recipe = FineTuneRecipe(epochs=1, seed=5, batch_size=16)
    fine_tune(model, tiny_digits.train, recipe, resolution=RESOLUTION)
    fine_tune(twin, tiny_digits.train, recipe, resolution=RESOLUTION)
    _assert_same_state(model, twin)
    assert not model.training
    assert not torch.equal(model.first_conv.conv.weight, supernet.first_conv.conv.weight)


def test_recalibrate_bn_recomputes_statistics_reproducibly(
    model: nn.Module, tiny_digits: DataSplits
) -> None:
    twin = copy.deepcopy(model)
    model.train()
    model.classifier.eval()
    before = [bn.running_mean.clone() for bn in _batch_norms(model)]
    kwargs = dict(resolution=RESOLUTION, n_images=30, batch_size=10)
    recalibrate_bn(model, tiny_digits.train, seed=1, **kwargs)
    recalibrate_bn(twin, tiny_digits.train, seed=1, **kwargs)
    _assert_same_state(model, twin)
    after = [bn.running_mean for bn in _batch_norms(model)]
    assert all(not torch.equal(old, new) for old, new in zip(before, after))
    # Three batches were averaged, and every module is back in its own mode.
    assert all(bn.num_batches_tracked.item() == 3 for bn in _batch_norms(model))
    assert all(bn.momentum == 0.1 for bn in _batch_norms(model))
    assert model.training and not model.classifier.training
    other = copy.deepcopy(twin)
    recalibrate_bn(other, tiny_digits.train, seed=2, **kwargs)
    assert not torch.equal(other.first_conv.bn.running_mean, model.first_conv.bn.running_mean)


def test_recalibrate_bn_in_one_batch_gives_that_batch_statistics(
    model: nn.Module, tiny_digits: DataSplits
) -> None:
    recalibrate_bn(model, tiny_digits.train, resolution=RESOLUTION, n_images=40, batch_size=40)
    images, _ = tiny_digits.train.tensors(RESOLUTION)
    features = model.first_conv.conv(images)
    bn = model.first_conv.bn
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(bn.running_var, features.var(dim=(0, 2, 3), unbiased=True))


def test_recalibration_images_are_drawn_once_per_split(
    model: nn.Module, tiny_digits: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin = copy.deepcopy(model)
    kwargs = dict(resolution=RESOLUTION, n_images=20, batch_size=10, seed=7)
    recalibrate_bn(model, tiny_digits.train, **kwargs)
    # Every later candidate reuses the prepared images: no subset, no resize, same statistics.
    calls = []
    monkeypatch.setattr(type(tiny_digits.train), "subset", lambda *a: calls.append(a))
    monkeypatch.setattr(type(tiny_digits.train), "batches", lambda *a, **k: calls.append(a))
    recalibrate_bn(twin, tiny_digits.train, **kwargs)
    assert calls == []
    _assert_same_state(model, twin)


def test_evaluate_matches_a_manual_count(model: nn.Module, tiny_digits: DataSplits) -> None:
    model.train()
    top1 = evaluate(model, tiny_digits.valid, resolution=RESOLUTION, batch_size=7)
    assert model.training
    images, labels = tiny_digits.valid.tensors(RESOLUTION)
    model.eval()
    # In the same batches of 7: a batch of 30 may round differently in the last bits, and two
    # near-equal logits could then swap their argmax on some machine.
    with torch.no_grad():
        correct = sum(
            (model(images[start : start + 7]).argmax(dim=1) == labels[start : start + 7]).sum().item()
            for start in range(0, len(labels), 7)
        )
    assert 0.0 <= top1 <= 100.0
    assert top1 == pytest.approx(100.0 * correct / len(labels))


def test_evaluate_candidate_is_reproducible(supernet: nn.Module, tiny_digits: DataSplits) -> None:
    subnet = MobileNetV3Space(resolutions=(RESOLUTION,)).sample(np.random.default_rng(4), 1)[0]
    before = copy.deepcopy(supernet.state_dict())
    recipe = FineTuneRecipe(epochs=1, seed=7, batch_size=16, bn_images=30)
    top1, model = evaluate_candidate(supernet, subnet, tiny_digits, recipe)
    again, twin = evaluate_candidate(supernet, subnet, tiny_digits, recipe)
    assert 0.0 <= top1 <= 100.0 and top1 == again
    _assert_same_state(model, twin)
    for key, value in supernet.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_seeding_helpers() -> None:
    set_seed(11)
    expected = torch.rand(3)
    set_seed(11)
    state = torch.get_rng_state()
    with seeded(3):
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(3), expected)
    with seeded(3):
        assert torch.equal(torch.rand(3), inside)
