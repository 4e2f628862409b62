"""Tests of the analytic cost model against the network that the ofa package builds."""

from __future__ import annotations

import warnings
from collections import defaultdict
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
import torch.fx
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from ofa.utils.pytorch_modules import Hsigmoid, Hswish
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
from torchprofile import profile_macs

from optnas.networks import costs
from optnas.networks.supernet import build_supernet
from optnas.spaces import MobileNetV3Space
from optnas.spaces.mobilenetv3 import MAX_DEPTH, N_SLOTS, active_blocks

# Each case profiles the two ends of its space and three random subnets with torchprofile (half a
# second each, mostly its trace). The model is per layer, and over the cases these subnets put
# every kernel and expand ratio in every slot and every depth in every stage (checked below).
# The number of classes alternates so that both classifier sizes are covered.
CASES = [
    (1.0, 32, 10),
    (1.0, 64, 1000),
    (1.0, 128, 10),
    (1.0, 224, 1000),
    (1.2, 32, 1000),
    (1.2, 64, 10),
    (1.2, 128, 1000),
    (1.2, 224, 10),
]
SUBNETS_PER_CASE = 5
# Below width 1.0 the layers are those of the cases above at other channel counts; the head
# differs (no feature mix): the smallest subnet and a random one per width check it.
NARROW_CASES = [(0.35, 32, 10), (0.5, 40, 1000), (0.75, 24, 10)]

# Units the cost model applies in place on their input (nn.Identity: the feature mix below
# width 1.0 returns its input), and views that share its storage.
_IN_PLACE_MODULES = (nn.BatchNorm2d, nn.ReLU, Hswish, Hsigmoid, nn.Identity)
_VIEW_METHODS = ("view", "flatten", "reshape")


@cache
def _supernet(width: float, n_classes: int) -> OFAMobileNetV3:
    # optnas's supernet: OFA's, with MCUNet's head below width 1.0.
    return build_supernet(n_classes, width, dropout_rate=0)


def _build(subnet: dict[str, Any], n_classes: int) -> nn.Module:
    supernet = _supernet(subnet["w"], n_classes)
    supernet.set_active_subnet(ks=subnet["ks"], e=subnet["e"], d=subnet["d"])
    return supernet.get_active_subnet(preserve_weight=True).eval()


class _Tracer(torch.fx.Tracer):
    """Keep ofa's activations whole, so that they read as units applied in place."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, (Hswish, Hsigmoid)) or super().is_leaf_module(module, name)


def _graph_activations(network: nn.Module, resolution: int) -> tuple[int, int]:
    """Return the activations and their peak, from the traced graph and the real shapes.

    This is independent of the cost model: it walks the operations in execution order and
    keeps every tensor alive from its producer to its last reader.

    Args:
        network: the extracted subnet.
        resolution: the input resolution.
    """
    graph_module = torch.fx.GraphModule(network, _Tracer().trace(network))
    with torch.no_grad():
        ShapeProp(graph_module).propagate(torch.randn(1, 3, resolution, resolution))
    modules = dict(graph_module.named_modules())
    storage: dict[torch.fx.Node, torch.fx.Node] = {}
    sizes: dict[torch.fx.Node, int] = {}
    births: dict[torch.fx.Node, int] = {}
    deaths: dict[torch.fx.Node, int] = {}
    for node in graph_module.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if node.op == "output" or meta is None:
            continue
        inputs = [storage[arg] for arg in node.all_input_nodes if arg in storage]
        in_place = node.op == "call_module" and isinstance(
            modules[node.target], _IN_PLACE_MODULES
        )
        view = node.op == "call_method" and node.target in _VIEW_METHODS
        # ofa pools globally with mean over the width then over the height: one pooling.
        row_mean = node.op == "call_method" and node.target == "mean" and all(
            user.op == "call_method" and user.target == "mean" for user in node.users
        )
        if in_place or view or row_mean:
            storage[node] = inputs[0]
            continue
        step = len(births) - 1  # the input image is born before the first operation
        storage[node] = node
        sizes[node] = int(np.prod(meta.shape))
        births[node] = step
        deaths[node] = step
        for tensor in inputs:
            deaths[tensor] = step
    n_steps = len(births) - 1
    activations = sum(size for node, size in sizes.items() if births[node] >= 0)
    peak = max(
        sum(sizes[node] for node in sizes if births[node] <= step <= deaths[node])
        for step in range(n_steps)
    )
    return activations, peak


def _millions_to_int(value: float) -> int:
    return round(value * 1e6)


def _case_subnets(width: float, resolution: int) -> list[dict[str, Any]]:
    """The subnets a case of CASES profiles: random ones, then the smallest and the largest."""
    space = MobileNetV3Space(width_mult=width, resolutions=[resolution])
    rng = np.random.default_rng(int(width * 10) * 1000 + resolution)
    return [*space.sample(rng, SUBNETS_PER_CASE - 2), space.smallest(), space.largest()]


def test_cases_hold_every_kind_of_layer() -> None:
    kernels, expands, depths = (defaultdict(set) for _ in range(3))
    for width, resolution, _ in CASES:
        for subnet in _case_subnets(width, resolution):
            for _, slot, kernel, expand in active_blocks(subnet):
                kernels[slot].add(kernel)
                expands[slot].add(expand)
            for stage, depth in enumerate(subnet["d"]):
                depths[stage].add(depth)
    assert all(kernels[slot] == {3, 5, 7} and expands[slot] == {3, 4, 6} for slot in range(N_SLOTS))
    assert all(depths[stage] == {2, 3, 4} for stage in range(5))


@pytest.mark.parametrize("width, resolution, n_classes", CASES)
def test_profile_matches_network(width: float, resolution: int, n_classes: int) -> None:
    _assert_profile_matches(_case_subnets(width, resolution), resolution, n_classes)


@pytest.mark.parametrize("width, resolution, n_classes", NARROW_CASES)
def test_profile_matches_network_without_feature_mix(width: float, resolution: int, n_classes: int) -> None:
    space = MobileNetV3Space(width_mult=width, resolutions=[resolution])
    subnets = [space.smallest(), *space.sample(np.random.default_rng(resolution), 1)]
    assert isinstance(_build(subnets[0], n_classes).feature_mix_layer, nn.Identity)
    _assert_profile_matches(subnets, resolution, n_classes)


def _assert_profile_matches(subnets: list[dict[str, Any]], resolution: int, n_classes: int) -> None:
    for subnet in subnets:
        network = _build(subnet, n_classes)
        image = torch.randn(1, 3, resolution, resolution)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs = profile_macs(network, image)
        activations, peak = _graph_activations(network, resolution)

        cost = costs.profile(subnet, n_classes=n_classes)

        assert _millions_to_int(cost["params"]) == sum(p.numel() for p in network.parameters())
        # torchprofile's count is reproduced exactly, beyond the required 1 %.
        assert _millions_to_int(cost["macs"]) == macs
        assert _millions_to_int(cost["activations"]) == activations
        assert _millions_to_int(cost["peak_activations"]) == peak


def test_slots_map_to_blocks() -> None:
    space = MobileNetV3Space(width_mult=1.0, resolutions=[32])
    supernet = _supernet(1.0, 10)
    for subnet in space.sample(np.random.default_rng(1), 10):
        network = _build(subnet, 10)

        # Slot j of stage s is block 1 + 4 s + j of the supernet.
        for slot, block in enumerate(supernet.blocks[1:]):
            assert block.conv.active_kernel_size == subnet["ks"][slot]
            assert block.conv.active_expand_ratio == subnet["e"][slot]
        assert supernet.runtime_depth == subnet["d"]
        # The extracted network holds the stem block, then each stage's active slots.
        assert len(network.blocks) == 1 + sum(subnet["d"])
        position = 1
        for stage, depth in enumerate(subnet["d"]):
            for layer in range(depth):
                block = network.blocks[position].conv
                slot = stage * MAX_DEPTH + layer
                assert block.kernel_size == subnet["ks"][slot]
                assert block.expand_ratio == subnet["e"][slot]
                position += 1


def test_compact_form_is_the_same_network() -> None:
    space = MobileNetV3Space(width_mult=1.2, resolutions=[64])
    for subnet in space.sample(np.random.default_rng(2), 5):
        active = [
            stage * MAX_DEPTH + layer
            for stage, depth in enumerate(subnet["d"])
            for layer in range(depth)
        ]
        compact = {
            "ks": [subnet["ks"][slot] for slot in active],
            "e": [subnet["e"][slot] for slot in active],
            "d": subnet["d"],
            "r": 64,
            "w": 1.2,
        }
        network = _build(space.canonical(compact), 10)

        assert costs.profile(compact, n_classes=10) == costs.profile(subnet, n_classes=10)
        assert [block.conv.kernel_size for block in network.blocks[1:]] == compact["ks"]
        assert [block.conv.expand_ratio for block in network.blocks[1:]] == compact["e"]


@pytest.mark.parametrize(
    "width, end, macs, params_1000, params_10",
    [
        (1.0, "largest", (579.5, 298.1, 192.6, 16.8), 7.665, 6.397),
        (1.0, "smallest", (125.6, 65.5, 42.9, 5.3), 3.411, 2.143),
        (1.2, "largest", (860.3, 442.4, 285.6, 24.4), 10.702, 9.180),
        (1.2, "smallest", (198.9, 103.3, 67.4, 7.7), 4.602, 3.081),
    ],
)
def test_reference_figures(
    width: float,
    end: str,
    macs: tuple[float, ...],
    params_1000: float,
    params_10: float,
) -> None:
    resolutions = (224, 160, 128, 32)
    subnet = getattr(MobileNetV3Space(width_mult=width, resolutions=resolutions), end)()
    for resolution, expected in zip(resolutions, macs):
        assert costs.profile({**subnet, "r": resolution})["macs"] == pytest.approx(
            expected, abs=0.05
        )
    assert costs.profile(subnet)["params"] == pytest.approx(params_1000, abs=5e-4)
    assert costs.profile(subnet, n_classes=10)["params"] == pytest.approx(params_10, abs=5e-4)


def test_profile_output() -> None:
    subnet = MobileNetV3Space(resolutions=[160]).sample(np.random.default_rng(3), 1)[0]
    cost = costs.profile(subnet, n_classes=100)
    costs.clear_cache()

    assert tuple(cost) == costs.COST_NAMES
    assert all(isinstance(value, float) for value in cost.values())
    assert cost["params"] != round(cost["params"], 2)
    assert costs.profile(subnet, n_classes=100) == cost
    assert cost["peak_activations"] < cost["activations"]
    without_width = {key: value for key, value in subnet.items() if key != "w"}
    assert costs.profile(without_width, n_classes=100) == cost


def _valid() -> dict[str, Any]:
    return MobileNetV3Space(resolutions=[32]).largest()


@pytest.mark.parametrize(
    "subnet, match",
    [
        ([3, 4], "JSON object"),
        ({"ops": ["none"] * 6}, "nasbench201"),
        ({key: value for key, value in _valid().items() if key != "r"}, "resolution 'r'"),
        ({**_valid(), "r": 32.5}, "integer"),
        ({**_valid(), "r": 4}, "at least 8"),
        ({**_valid(), "r": "large"}, "not a valid"),
        ({**_valid(), "r": [32]}, "not a valid"),
        ({**_valid(), "w": 1.1}, "width multiplier"),
        ({**_valid(), "w": None}, "not a valid"),
        ({**_valid(), "ks": [4] * 20}, "allowed values"),
        ({**_valid(), "e": [3] * 7}, "must hold 20"),
        ({**_valid(), "d": [5] * 5}, "allowed values"),
        ({key: value for key, value in _valid().items() if key != "ks"}, "lacks the key"),
    ],
)
def test_invalid_subnet(subnet: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        costs.profile(subnet)


@pytest.mark.parametrize("n_classes", [0, -3, 2.5, True, "10"])
def test_invalid_n_classes(n_classes: Any) -> None:
    with pytest.raises(ValueError, match="n_classes"):
        costs.profile(_valid(), n_classes=n_classes)


def test_nasbench201_features_see_only_what_the_cell_computes() -> None:
    from optnas.spaces.nasbench201 import OPERATIONS, NASBench201Space, lookup

    space = NASBench201Space()

    def vector(*ops: str) -> np.ndarray:
        return space.to_vector({"ops": list(ops)})

    # Edge 0→3 alone is live; edges 0→1 and 1→2 lead nowhere once 1→3, 2→3 are none.
    alone = vector("nor_conv_1x1", "none", "skip_connect", "nor_conv_3x3", "none", "none")
    cleaned = vector("none", "none", "none", "nor_conv_3x3", "none", "none")
    np.testing.assert_array_equal(space.features(alone[None]), space.features(cleaned[None]))
    # Every cell without a live path scores the same in the tables, and looks the same.
    dead = [vector("nor_conv_3x3", "avg_pool_3x3", "none", "none", "none", "none"),
            vector("none", "none", "nor_conv_3x3", "none", "skip_connect", "nor_conv_1x1")]
    assert {round(lookup(space.from_vector(v), "cifar10", 0)["top1"], 3) for v in dead} == {
        round(lookup(space.smallest(), "cifar10", 0)["top1"], 3)}
    np.testing.assert_array_equal(space.features(dead[0][None]), space.features(dead[1][None]))
    # The largest cell: all four paths live, 6 convolutions, 1/2/2/3 on the paths.
    features = space.features(vector(*[OPERATIONS[-1]] * 6)[None])[0]
    assert list(features[34:42]) == [1, 1, 1, 1, 1, 2, 2, 3]
    assert features[30:34].tolist() == [0, 0, 0, 6]
