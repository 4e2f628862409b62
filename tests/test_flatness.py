"""Flatness (robustness under weight noise), top1_robust and SAM/ASAM fine-tuning."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from optnas.data.datasets import DataSplits
from optnas.evaluation.flatness import alpha_norm, robustness, top1_robust
from optnas.networks.inference import evaluate
from optnas.networks.supernet import extract_subnet
from optnas.spaces import MobileNetV3Space
from optnas.training.loop import fine_tune
from optnas.training.recipes import FineTuneRecipe
from optnas.training.sam import SAM, make_optimizer
from tests.conftest import digits_subsets

RESOLUTION = 24


@pytest.fixture(scope="module")
def tiny_data(digits: DataSplits) -> DataSplits:
    return digits_subsets(digits, 64, 60)


@pytest.fixture(scope="module")
def trained(supernet: nn.Module, tiny_data: DataSplits) -> nn.Module:
    torch.manual_seed(0)
    subnet = MobileNetV3Space(resolutions=(RESOLUTION,)).smallest()
    model = extract_subnet(supernet, subnet)
    fine_tune(model, tiny_data.train, FineTuneRecipe(epochs=2, lr=0.05), resolution=RESOLUTION)
    return model


def test_sigma_zero_gives_zero_and_leaves_the_weights(trained: nn.Module, tiny_data: DataSplits) -> None:
    before = copy.deepcopy(trained.state_dict())
    value = robustness(trained, tiny_data.valid, resolution=RESOLUTION, sigmas=[0.0], n_samples=3)
    assert value == 0.0
    for key, tensor in trained.state_dict().items():
        assert torch.equal(tensor, before[key]), key


def test_noise_is_reproducible_from_the_seed_and_weights_are_restored(
    trained: nn.Module, tiny_data: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optnas.evaluation import flatness

    # The noisy weights each evaluation sees, recorded: whether two seeds give different
    # *accuracies* depends on the machine's floating point (60 images: coarse steps that can
    # coincide), whether they draw different *noise* does not.
    seen: list[torch.Tensor] = []
    real_evaluate = flatness.evaluate

    def recording_evaluate(model: nn.Module, *args: object, **kwargs: object) -> float:
        seen.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(flatness, "evaluate", recording_evaluate)
    before = copy.deepcopy(trained.state_dict())
    clean = torch.cat([p.detach().flatten().clone() for p in trained.parameters()])
    kwargs = dict(resolution=RESOLUTION, sigmas=[0.5, 1.0], n_samples=3)
    runs = []
    for seed in (7, 7, 8):
        seen.clear()
        value = robustness(trained, tiny_data.valid, seed=seed, **kwargs)
        # One clean evaluation, then one per draw (2 sigmas x 3 samples), each on noisy weights.
        assert len(seen) == 7 and torch.equal(seen[0], clean)
        assert all(not torch.equal(noisy, clean) for noisy in seen[1:])
        runs.append((value, list(seen)))
    (first, first_weights), (again, again_weights), (_, other_weights) = runs
    assert first == again and all(torch.equal(a, b) for a, b in zip(first_weights, again_weights))
    assert all(not torch.equal(a, b) for a, b in zip(first_weights[1:], other_weights[1:]))
    assert first >= 0.0
    for key, tensor in trained.state_dict().items():
        assert torch.equal(tensor, before[key]), key
    assert trained.training  # the caller's mode is kept


def test_robustness_is_the_mean_absolute_drop_of_the_noisy_copies(
    trained: nn.Module, tiny_data: DataSplits
) -> None:
    sigma, seed = 0.3, 3
    clean = evaluate(trained, tiny_data.valid, resolution=RESOLUTION)
    generator = torch.Generator().manual_seed(seed)
    drops = []
    for _ in range(2):
        noisy = copy.deepcopy(trained)
        with torch.no_grad():
            for p in noisy.parameters():
                p.add_(sigma * p * torch.randn(p.shape, generator=generator))
        drops.append(abs(clean - evaluate(noisy, tiny_data.valid, resolution=RESOLUTION)))
    value = robustness(trained, tiny_data.valid, resolution=RESOLUTION, sigmas=[sigma], n_samples=2, seed=seed)
    assert value == pytest.approx(np.mean(drops))


def test_bad_sigma_and_samples_are_refused(trained: nn.Module, tiny_data: DataSplits) -> None:
    with pytest.raises(ValueError, match="sigma"):
        robustness(trained, tiny_data.valid, resolution=RESOLUTION, sigmas=[-0.1], n_samples=1)
    with pytest.raises(ValueError, match="draws"):
        robustness(trained, tiny_data.valid, resolution=RESOLUTION, sigmas=[0.1], n_samples=0)


def test_top1_robust_and_alpha_norm_formulas() -> None:
    assert top1_robust(90.0, 4.0, alpha=0.5, alpha_norm=2.0) == pytest.approx(0.5 * 10 + 2.0 * 0.5 * 4.0)
    assert alpha_norm([90.0, 80.0], [5.0, 10.0]) == pytest.approx(15.0 / 7.5)
    assert alpha_norm([], []) == 1.0
    assert alpha_norm([90.0], [0.0]) == 1.0


def _quadratic_step(optimizer_name: str, rho: float) -> torch.Tensor:
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = make_optimizer(optimizer_name, [w], lr=0.1, momentum=0.0, weight_decay=0.0, rho=rho)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def test_sam_takes_the_gradient_at_the_worst_neighbour() -> None:
    w0 = torch.tensor([1.0, -2.0])
    # loss = |w|^2: the gradient 2w, the SAM point w + rho*w/|w|, its gradient 2(w + rho*w/|w|).
    rho = 0.5
    expected = w0 - 0.1 * 2 * (w0 + rho * w0 / w0.norm())
    assert torch.allclose(_quadratic_step("sam", rho), expected)
    # ASAM: e = rho * w^2 * g / |w*g| with g = 2w.
    g = 2 * w0
    e = rho * w0**2 * g / (w0.abs() * g).norm()
    assert torch.allclose(_quadratic_step("asam", rho), w0 - 0.1 * 2 * (w0 + e))
    assert torch.allclose(_quadratic_step("sgd", rho), w0 - 0.1 * 2 * w0)


def test_sam_fine_tuning_trains_and_is_seeded(supernet: nn.Module, tiny_data: DataSplits) -> None:
    subnet = MobileNetV3Space(resolutions=(RESOLUTION,)).smallest()
    models = [extract_subnet(supernet, subnet) for _ in range(3)]
    for model, optim in zip(models, ("sam", "sam", "asam")):
        fine_tune(model, tiny_data.train, FineTuneRecipe(epochs=1, optim=optim, seed=1), resolution=RESOLUTION)
    for key, tensor in models[0].state_dict().items():
        assert torch.equal(tensor, models[1].state_dict()[key]), key
    untouched = extract_subnet(supernet, subnet)
    assert any(not torch.equal(a, b) for a, b in zip(models[0].parameters(), untouched.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(models[0].parameters(), models[2].parameters()))
    with pytest.raises(ValueError, match="optim must be one of"):
        make_optimizer("adam", models[0].parameters(), lr=0.1, momentum=0.9, weight_decay=0.0)
    with pytest.raises(ValueError, match="rho must be positive"):
        SAM(models[0].parameters(), torch.optim.SGD, rho=0.0)
