"""Tests of the eemobilenetv3 space, the exit heads' exact costs and the early-exit forward."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchprofile import profile_macs

from optnas.early_exits import (
    EarlyExitNetwork,
    exit_decisions,
    exit_outputs,
    exit_profile,
    exit_stats,
    tune_epsilon,
)
from optnas.spaces import EEMobileNetV3Space
from optnas.spaces.eemobilenetv3 import EPSILONS, n_exits
from optnas.supernet import build_supernet, extract_subnet
from tests.conftest import invoke_cli


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


@pytest.fixture(scope="module")
def supernet() -> nn.Module:
    return build_supernet(10)


def test_space_genes_and_canonical_form() -> None:
    space = EEMobileNetV3Space(resolutions=[32])
    names = space.gene_names()
    assert names[-8:] == [f"exit{i}" for i in range(1, 5)] + [f"eps{i}" for i in range(1, 5)]
    rng = np.random.default_rng(0)
    for subnet in space.sample(rng, 40):
        assert n_exits(subnet) >= 1
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
        assert len(figures["exit_macs"]) == n_exits(subnet) + 1
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
