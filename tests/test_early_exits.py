"""Tests of the eemobilenetv3 space, the exit heads' exact costs and the early-exit forward."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchprofile import profile_macs

from optnas.evaluation.early_exits import tune_epsilon
from optnas.networks.early_exits import (
    EarlyExitNetwork,
    exit_decisions,
    exit_outputs,
    exit_stats,
)
from optnas.networks.exit_costs import exit_profile
from optnas.networks.supernet import extract_subnet
from optnas.spaces import EEMobileNetV3Space
from optnas.spaces.eemobilenetv3 import EPSILONS
from optnas.training.recipes import ExitRecipe, FineTuneRecipe
from tests.conftest import digits_subsets, invoke_cli


class _PathToExit(nn.Module):
    """Everything a sample leaving at exit ``index`` computes: backbone so far and heads passed."""

    def __init__(self, network: EarlyExitNetwork, index: int) -> None:
        super().__init__()
        self.network, self.index = network, index

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.network
        x = net.backbone.first_conv(x)
        outputs = []
        for position, (start, end) in enumerate(net._segments()):
            for block in net.backbone.blocks[start:end]:
                x = block(x)
            if position == net.n_exits:
                outputs.append(net._final(x))
            else:
                outputs += list(net.heads[position](x))
            if position == self.index:
                return outputs
        return outputs


def test_space_genes_and_canonical_form() -> None:
    space = EEMobileNetV3Space(resolutions=[32])
    names = space.gene_names()
    assert names[-8:] == [f"exit{i}" for i in range(1, 5)] + [f"eps{i}" for i in range(1, 5)]
    rng = np.random.default_rng(0)
    for subnet in space.sample(rng, 40):
        assert subnet.n_exits >= 1
        assert all(eps == EPSILONS[0] for flag, eps in zip(subnet["exits"], subnet["epsilon"]) if not flag)
        assert space.from_vector(space.to_vector(subnet)) == subnet
    # All exits off decodes to an exit after stage 4; the vectorised form agrees.
    params = space.encode(space.largest())
    params.update({f"exit{i}": 0 for i in range(1, 5)})
    decoded = space.decode(params)
    assert decoded["exits"] == [0, 0, 0, 1] and decoded["epsilon"][:3] == [EPSILONS[0]] * 3
    vector = np.array([[values.index(params[n]) for n, values in zip(names, space.choices())]])
    assert (space.canonical_vectors(vector)[0] == space.to_vector(decoded)).all()
    # Absent exits' thresholds do not change the key.
    subnet = space.smallest()
    assert space.key({**subnet, "epsilon": [0.1, 0.9, 0.5, 0.3]}) == space.key(subnet)
    with pytest.raises(ValueError, match="at least one intermediate exit"):
        space.canonical({**subnet, "exits": [0, 0, 0, 0]})
    with pytest.raises(ValueError, match="allowed values"):
        space.canonical({**subnet, "epsilon": [0.15, 0.1, 0.1, 0.1]})


@pytest.mark.parametrize("resolution", [32, 160])
def test_exit_costs_match_torchprofile_and_parameters(supernet: nn.Module, resolution: int) -> None:
    space = EEMobileNetV3Space(resolutions=[resolution])
    rng = np.random.default_rng(resolution)
    for subnet in [space.largest(), *space.sample(rng, 1)]:
        network = EarlyExitNetwork(extract_subnet(supernet, subnet), subnet, 10).eval()
        figures = exit_profile(subnet, 10)
        assert len(figures["exit_macs"]) == subnet.n_exits + 1
        image = torch.randn(1, 3, resolution, resolution)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index, expected in enumerate(figures["exit_macs"]):
                assert profile_macs(_PathToExit(network, index), image) / 1e6 == pytest.approx(expected, abs=1e-9)
            assert profile_macs(network.backbone, image) / 1e6 == pytest.approx(figures["macs"], abs=1e-9)
        counted = sum(p.numel() for p in network.parameters()) / 1e6
        assert counted == pytest.approx(figures["params"], abs=1e-9)
        heads = [sum(p.numel() for p in head.parameters()) / 1e6 for head in network.heads]
        assert heads == pytest.approx(figures["head_params"], abs=1e-12)


def test_profile_prints_per_exit_macs(tmp_path: Path) -> None:
    subnet = EEMobileNetV3Space(resolutions=[32]).largest()
    path = tmp_path / "net.subnet"
    path.write_text(json.dumps(subnet))
    figures = exit_profile(subnet, 10)
    result = invoke_cli("profile", str(path), "--n-classes", "10", "--json")
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["exit_macs"] == figures["exit_macs"]
    table = invoke_cli("profile", str(path), "--n-classes", "10")
    assert f"exit 1 (after stage 1)  {figures['exit_macs'][0]:10.4f} M" in table.stdout
    path.write_text(json.dumps({**subnet, "exits": [0, 0, 0, 0]}))
    bad = invoke_cli("profile", str(path), "--n-classes", "10")
    assert bad.returncode == 2 and "at least one intermediate exit" in bad.stderr


def test_exit_decisions_take_the_first_exit_that_fires() -> None:
    confidence = torch.tensor([[0.2, 0.9, 0.2, 0.2], [0.8, 0.1, 0.2, 0.6]])
    assert exit_decisions(confidence, [0.5, 0.5]).tolist() == [1, 0, 2, 1]
    assert exit_decisions(confidence, [0.95, 0.95]).tolist() == [2, 2, 2, 2]


@pytest.fixture(scope="module")
def trained(supernet: nn.Module, digits):
    """A candidate with exits after stages 1, 2 and 4, its heads trained one epoch (joint)."""
    from optnas.evaluation.early_exits import evaluate_ee_candidate

    space = EEMobileNetV3Space(resolutions=[32])
    subnet = space.canonical({**space.smallest(), "exits": [1, 1, 0, 1], "epsilon": [0.5, 0.5, 0.1, 0.5]})
    stats, model = evaluate_ee_candidate(supernet, subnet, digits, FineTuneRecipe(epochs=0),
                                         ExitRecipe(warmup_epochs=1, ee_epochs=1))
    return subnet, stats, model


def test_batch_one_forward_agrees_with_batched_evaluation(trained, digits) -> None:
    _, _, model = trained
    _, confidence, labels = exit_outputs(model, digits.valid, resolution=32)
    # Thresholds under which every exit takes some images, each in the widest gap between the
    # confidences of the images still there at that exit (among their middle half, so that
    # both sides keep a quarter): one image alone, a batch of 500 and a batch of one may differ
    # in the last bits, never by the margin to the nearest confidence.
    remaining = torch.ones(len(labels), dtype=torch.bool)
    epsilon, margins = [], []
    for exit_confidence in confidence:
        values = exit_confidence[remaining].double().sort().values
        quarter = len(values) // 4
        middle = values[quarter : len(values) - quarter]
        gap = int((middle[1:] - middle[:-1]).argmax())
        epsilon.append(float((middle[gap] + middle[gap + 1]) / 2))
        margins.append(float(middle[gap + 1] - middle[gap]) / 2)
        remaining &= exit_confidence < epsilon[-1]
    chosen = exit_decisions(confidence, epsilon)
    assert set(chosen.tolist()) == {0, 1, 2, 3}
    assert min(margins) > 1e-5, margins
    images, _ = digits.valid.tensors(32)
    with torch.inference_mode():
        all_logits, _ = model(images)
    for index in range(len(labels)):
        logits, exit_index = model.forward_early(images[index : index + 1], epsilon)
        assert exit_index == chosen[index].item()
        # The logits of the exit taken, not their argmax: two near-equal logits may swap.
        torch.testing.assert_close(logits[0], all_logits[exit_index][index], atol=1e-4, rtol=1e-4)


def test_exit_stats_are_consistent(trained, digits) -> None:
    subnet, stats, model = trained
    figures = exit_profile(subnet, 10)
    assert len(stats["exit_ratios"]) == 4 and sum(stats["exit_ratios"]) == pytest.approx(1.0)
    assert stats["exit_macs"] == figures["exit_macs"] and stats["macs"] == figures["macs"]
    assert stats["avg_macs"] == pytest.approx(sum(r * m for r, m in zip(stats["exit_ratios"], stats["exit_macs"])))
    assert all(0 <= top1 <= 100 for top1 in stats["exit_top1"]) and 0 <= stats["top1"] <= 100
    predictions, confidence, labels = exit_outputs(model, digits.valid, resolution=32)
    # Thresholds that never fire: everything leaves at the final exit.
    never = exit_stats(predictions, confidence, labels, [1.01] * 3, figures["exit_macs"])
    assert never["exit_ratios"] == [0.0, 0.0, 0.0, 1.0]
    assert never["avg_macs"] == pytest.approx(figures["macs"] + sum(figures["head_macs"]))
    assert never["top1"] == pytest.approx(never["exit_top1"][-1])
    # Thresholds that always fire: everything leaves at the first exit.
    always = exit_stats(predictions, confidence, labels, [0.0] * 3, figures["exit_macs"])
    assert always["exit_ratios"][0] == 1.0 and always["avg_macs"] == pytest.approx(figures["exit_macs"][0])


def _every_threshold_choice(predictions, confidence, labels, exit_macs) -> list[dict]:
    """The figures of every combination of thresholds, scored one by one by :func:`exit_stats`."""
    return [
        {"epsilon": list(epsilon), **exit_stats(predictions, confidence, labels, list(epsilon), exit_macs)}
        for epsilon in itertools.product(EPSILONS, repeat=confidence.shape[0])
    ]


def _assert_best_under(choices: list[dict], mmax: float, chosen: dict) -> None:
    """``chosen`` is the most accurate choice within ``avg_macs <= mmax``, ties to the lower avg_macs."""
    feasible = [c for c in choices if c["avg_macs"] <= mmax]
    top1 = max(c["top1"] for c in feasible)
    assert chosen["avg_macs"] <= mmax and chosen["top1"] == top1
    assert chosen["avg_macs"] == pytest.approx(min(c["avg_macs"] for c in feasible if c["top1"] == top1))


def test_tune_epsilon_respects_a_reachable_macs_bound(trained, digits) -> None:
    subnet, _, model = trained
    exit_macs = exit_profile(subnet, 10)["exit_macs"]
    predictions, confidence, labels = exit_outputs(model, digits.valid, resolution=32)
    choices = _every_threshold_choice(predictions, confidence, labels, exit_macs)
    unbounded = tune_epsilon(predictions, confidence, labels, exit_macs)
    best = exit_stats(predictions, confidence, labels, unbounded, exit_macs)
    assert all(value in EPSILONS for value in unbounded)
    # Unbounded, the most accurate choice wins: no combination is more accurate.
    _assert_best_under(choices, float("inf"), best)
    # Bounds between two neighbouring avg_macs that some choice reaches (never on a reachable
    # value, where summing in another order could put it on either side): the cheapest reachable,
    # the middle one and, when the optimum is not the cheapest, one just under the optimum,
    # which it violates. Which avg_macs are reachable depends on the trained confidences,
    # so on the machine; these bounds are reachable by construction.
    reached = sorted({round(c["avg_macs"], 9) for c in choices})
    cheaper = [m for m in reached if m < round(best["avg_macs"], 9)]
    bounds = {len(reached) // 2}
    if len(reached) > 1:
        bounds.add(0)
    if cheaper:
        bounds.add(len(cheaper) - 1)
    for index in sorted(bounds):
        upper = reached[index + 1] if index + 1 < len(reached) else reached[index] + 1.0
        mmax = (reached[index] + upper) / 2
        bounded = tune_epsilon(predictions, confidence, labels, exit_macs, mmax=mmax)
        assert all(value in EPSILONS for value in bounded)
        chosen = exit_stats(predictions, confidence, labels, bounded, exit_macs)
        _assert_best_under(choices, mmax, chosen)
        assert chosen["top1"] <= best["top1"]
        if mmax < best["avg_macs"]:
            assert bounded != unbounded and chosen["avg_macs"] < best["avg_macs"]


def test_tune_epsilon_under_an_unreachable_bound_violates_it_least(trained, digits) -> None:
    subnet, _, model = trained
    exit_macs = exit_profile(subnet, 10)["exit_macs"]
    predictions, confidence, labels = exit_outputs(model, digits.valid, resolution=32)
    choices = _every_threshold_choice(predictions, confidence, labels, exit_macs)
    cheapest = min(c["avg_macs"] for c in choices)
    # Below every reachable avg_macs (even below the first exit's cost, which nothing beats):
    # the least relative excess is the cheapest choice, and among those the most accurate.
    mmax = min(cheapest, exit_macs[0]) / 2
    bounded = tune_epsilon(predictions, confidence, labels, exit_macs, mmax=mmax)
    chosen = exit_stats(predictions, confidence, labels, bounded, exit_macs)
    assert chosen["avg_macs"] > mmax and chosen["avg_macs"] == pytest.approx(cheapest)
    assert chosen["top1"] == max(c["top1"] for c in choices if c["avg_macs"] == pytest.approx(cheapest))


def test_tune_epsilon_on_known_confidences() -> None:
    # Four images, two exits (1 M and 2 M) and the final one (4 M). Exit 1 is right on images
    # 0-1, exit 2 on 0-2, the final exit on all; image 3 is confidently wrong at exit 2.
    labels = torch.tensor([0, 1, 2, 3])
    predictions = torch.tensor([[0, 1, 9, 9], [0, 1, 2, 9], [0, 1, 2, 3]])
    confidence = torch.tensor([[0.95, 0.85, 0.55, 0.15], [0.95, 0.95, 0.65, 0.75]])
    exit_macs = [1.0, 2.0, 4.0]

    def tuned(**bound: float) -> dict:
        return exit_stats(predictions, confidence, labels, tune_epsilon(predictions, confidence, labels, exit_macs,
                                                                        **bound), exit_macs)

    # Unbounded: all right needs images 2 and 3 at the final exit (ε2 >= 0.8 to keep 3 from
    # exit 2, which then keeps 2 as well); the cheapest sends 0 and 1 out at exit 1: 2.5 M.
    unbounded = tuned()
    assert unbounded["top1"] == 100.0 and unbounded["exit_ratios"] == [0.5, 0.0, 0.5]
    # At most 2 M: 75 % at best (image 3 wrong at exit 2), cheapest with 0-1 at exit 1 and
    # 2-3 at exit 2: 1.5 M. Sending 0-2 out at exit 1 and 3 to the final exit is 75 % at 1.75 M.
    bounded = tuned(mmax=2.0)
    assert bounded["top1"] == 75.0 and bounded["avg_macs"] == 1.5
    # 0.5 M is below exit 1's cost: the least excess is every image out at exit 1 (1 M), 50 %.
    least = tuned(mmax=0.5)
    assert least["exit_ratios"] == [1.0, 0.0, 0.0] and least["top1"] == 50.0


def test_every_confidence_loss_term_has_a_gradient(trained, digits) -> None:
    from optnas.training.early_exits import confidence_loss

    subnet, _, model = trained
    model.train()
    images, labels = next(digits.train.batches(32, 32))
    figures = exit_profile(subnet, 10)
    support = torch.rand(10, 3)
    for mmax in (None, figures["exit_macs"][0]):
        for name in ("alpha", "beta", "gamma"):
            model.zero_grad()
            logits, confidences = model(images)
            terms = confidence_loss(logits, confidences, labels, exit_macs=figures["exit_macs"], mmax=mmax,
                                    support=support)
            terms[name].backward()
            gradient = model.heads[0].linear.weight.grad
            assert gradient is not None and gradient[-1].abs().sum() > 0, (name, mmax)


def test_confidence_training_freezes_the_backbone(supernet: nn.Module, digits) -> None:
    from optnas.training.early_exits import train_exits

    space = EEMobileNetV3Space(resolutions=[32])
    subnet = space.smallest()
    model = EarlyExitNetwork(extract_subnet(supernet, subnet), subnet, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = digits.train.subset(list(range(256)))
    train_exits(model, small, FineTuneRecipe(epochs=0), ExitRecipe(method="confidence", support_set=True),
                resolution=32, exit_macs=exit_profile(subnet, 10)["exit_macs"])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["heads.0.linear.weight"], after["heads.0.linear.weight"])
    assert all(p.requires_grad for p in model.parameters())


def test_confidence_candidate_tunes_its_thresholds_under_mmax(supernet: nn.Module, digits) -> None:
    from optnas.evaluation.early_exits import evaluate_ee_candidate

    small = digits_subsets(digits, 300, n_test=len(digits.test))
    space = EEMobileNetV3Space(resolutions=[32])
    subnet = space.canonical({**space.smallest(), "exits": [1, 1, 0, 0], "epsilon": [0.9, 0.9, 0.1, 0.1]})
    exit_macs = exit_profile(subnet, 10)["exit_macs"]
    mmax = (exit_macs[0] + exit_macs[1]) / 2
    stats, model = evaluate_ee_candidate(
        supernet, subnet, small, FineTuneRecipe(epochs=0),
        ExitRecipe(method="confidence", warmup_epochs=1, ee_epochs=1, support_set=True, tune=True, mmax=mmax),
    )
    assert all(value in EPSILONS for value in stats["epsilon"])
    assert model.epsilon == stats["epsilon"] and not model.training
    # The stats are those of the thresholds chosen, on the validation split.
    predictions, confidence, labels = exit_outputs(model, digits.valid, resolution=32)
    again = exit_stats(predictions, confidence, labels, stats["epsilon"], exit_macs)
    assert {key: stats[key] for key in again} == again
    # Whether this bound is reachable depends on the trained confidences (at ε = 0.1 half the
    # images must leave at exit 1): the best within it if so, the cheapest choice otherwise.
    choices = _every_threshold_choice(predictions, confidence, labels, exit_macs)
    if any(c["avg_macs"] <= mmax for c in choices):
        _assert_best_under(choices, mmax, stats)
    else:
        assert stats["avg_macs"] == pytest.approx(min(c["avg_macs"] for c in choices))


def test_tune_epsilon_decides_as_inference_does_at_a_threshold_equal_to_a_confidence() -> None:
    # Half the images leave right at exit 1 with a confidence of exactly float32(0.7); the other
    # half (confidence 0.65) are wrong there and right at the final exit. Only the threshold 0.7
    # gets every image right, provided the search compares in float32 as exit_decisions does.
    confidence = torch.tensor([[0.7, 0.7, 0.65, 0.65]], dtype=torch.float32)
    labels = torch.tensor([0, 1, 2, 3])
    predictions = torch.tensor([[0, 1, 9, 9], [9, 9, 2, 3]])
    epsilon = tune_epsilon(predictions, confidence, labels, [1.0, 2.0])
    assert epsilon == [0.7]
    assert exit_stats(predictions, confidence, labels, epsilon, [1.0, 2.0])["top1"] == 100.0
