"""Supernet building, loading, subnet extraction and sandwich-rule training."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from optnas.data.datasets import DataSplits
from optnas.networks.supernet import (
    CHECKPOINT_FORMAT,
    SupernetError,
    build_supernet,
    extract_subnet,
    load_supernet,
    set_active,
)
from optnas.spaces.mobilenetv3 import (
    MAX_DEPTH,
    N_SLOTS,
    MobileNetV3Space,
    active_blocks,
)
from optnas.training import supernet as supernet_training
from optnas.training.supernet import train_supernet

RESOLUTION = 24


def _shallow_subnet(rng: np.random.Generator) -> dict[str, Any]:
    """A random canonical subnet with at least one stage shallower than 4."""
    depths = [int(d) for d in rng.choice([2, 3, 4], size=5)]
    depths[int(rng.integers(5))] = int(rng.choice([2, 3]))
    return MobileNetV3Space().canonical(
        {
            "ks": [int(k) for k in rng.choice([3, 5, 7], size=N_SLOTS)],
            "e": [int(e) for e in rng.choice([3, 4, 6], size=N_SLOTS)],
            "d": depths,
        }
    )


def _compact(subnet: dict[str, Any]) -> dict[str, Any]:
    """The Σd-long form the reference passed to OFA."""
    slots = [slot for _, slot, _, _ in active_blocks(subnet)]
    return {
        "ks": [subnet["ks"][slot] for slot in slots],
        "e": [subnet["e"][slot] for slot in slots],
        "d": subnet["d"],
    }


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_build_supernet_is_the_ofa_space() -> None:
    net = build_supernet(7, width_mult=1.2)
    assert (net.ks_list, net.expand_ratio_list, net.depth_list) == ([3, 5, 7], [3, 4, 6], [2, 3, 4])
    assert net.width_mult == 1.2 and net.classifier.linear.out_features == 7
    _assert_same_weights(net, build_supernet(7, width_mult=1.2))
    with pytest.raises(SupernetError, match="width"):
        build_supernet(10, width_mult=0.6)


def test_below_width_1_the_head_has_no_feature_mix() -> None:
    narrow = build_supernet(10, width_mult=0.35)
    assert isinstance(narrow.feature_mix_layer, torch.nn.Identity)
    assert narrow.classifier.linear.in_features == narrow.final_expand_layer.out_channels == 336
    assert not any(key.startswith("feature_mix_layer.") for key in narrow.state_dict())
    _assert_same_weights(narrow, build_supernet(10, width_mult=0.35))
    # From 1.0 on, OFA's head is untouched: its 1280-wide feature mix feeds the classifier.
    assert build_supernet(10).classifier.linear.in_features == 1280
    subnet = _shallow_subnet(np.random.default_rng(4))
    network = extract_subnet(narrow, {**subnet, "w": 0.35}).eval()
    assert isinstance(network.feature_mix_layer, torch.nn.Identity)
    images = torch.randn(2, 3, RESOLUTION, RESOLUTION)
    narrow.eval()
    set_active(narrow, subnet)
    with torch.no_grad():
        torch.testing.assert_close(network(images), narrow(images))


@pytest.mark.parametrize(("saved", "wanted"), [(0.35, 1.0), (1.0, 0.5), (0.5, 0.75)])
def test_load_names_the_width_a_checkpoint_holds(tmp_path: Path, saved: float, wanted: float) -> None:
    path = tmp_path / "supernet.pth"
    # A published-format file: the width is read off its weights (with or without the feature mix).
    torch.save({"state_dict": build_supernet(1000, width_mult=saved).state_dict()}, path)
    with pytest.raises(SupernetError, match=f"holds a width_mult={saved} supernet, not {wanted}"):
        load_supernet(path, 10, width_mult=wanted)
    loaded, messages = load_supernet(path, 10, width_mult=saved)
    assert loaded.width_mult == saved and "re-initialised" in messages[0]


@pytest.mark.parametrize("seed", range(5))
def test_extract_puts_every_slot_on_its_block(supernet: torch.nn.Module, seed: int) -> None:
    subnet = _shallow_subnet(np.random.default_rng(seed))
    network = extract_subnet(supernet, subnet)
    blocks = list(network.blocks[1:])
    expected = active_blocks(subnet)
    assert len(blocks) == sum(subnet["d"]) == len(expected)
    for block, (stage, slot, kernel, expand) in zip(blocks, expected):
        layer = block.conv
        assert (layer.kernel_size, layer.expand_ratio) == (kernel, expand), (stage, slot)
        assert layer.depth_conv.conv.weight.shape[-1] == kernel
        # The weights come from this slot's block of the supernet, not the Σd-th one.
        source = supernet.blocks[1 + slot].conv
        width = layer.point_linear.conv.weight.shape[1]
        assert torch.equal(
            layer.point_linear.conv.weight,
            source.point_linear.conv.conv.weight[: layer.point_linear.conv.weight.shape[0], :width],
        )


def test_extracted_network_computes_the_active_subnet(supernet: torch.nn.Module) -> None:
    subnet = _shallow_subnet(np.random.default_rng(10))
    network = extract_subnet(supernet, subnet).eval()
    images = torch.randn(4, 3, RESOLUTION, RESOLUTION)
    supernet.eval()
    supernet.set_active_subnet(ks=subnet["ks"], e=subnet["e"], d=subnet["d"])
    with torch.no_grad():
        assert network(images).shape == (4, 10)
        torch.testing.assert_close(network(images), supernet(images))
    supernet.set_max_net()
    supernet.train()


def test_extraction_neither_depends_on_nor_changes_the_active_subnet(
    supernet: torch.nn.Module,
) -> None:
    rng = np.random.default_rng(3)
    subnet, other = _shallow_subnet(rng), _shallow_subnet(rng)
    first = extract_subnet(supernet, subnet)
    # The reference's way to leave stale state: compact lists zipped with all 20 blocks.
    compact = _compact(other)
    supernet.set_active_subnet(ks=compact["ks"], e=compact["e"], d=compact["d"])
    state = (
        [block.conv.active_kernel_size for block in supernet.blocks[1:]],
        [block.conv.active_expand_ratio for block in supernet.blocks[1:]],
        list(supernet.runtime_depth),
    )
    _assert_same_weights(first, extract_subnet(supernet, subnet))
    assert state == (
        [block.conv.active_kernel_size for block in supernet.blocks[1:]],
        [block.conv.active_expand_ratio for block in supernet.blocks[1:]],
        list(supernet.runtime_depth),
    )
    # The compact form is placed per stage, so it is the same network.
    _assert_same_weights(first, extract_subnet(supernet, _compact(subnet)))
    supernet.set_max_net()


def test_extracted_weights_are_copies(supernet: torch.nn.Module) -> None:
    network = extract_subnet(supernet, MobileNetV3Space().largest())
    before = supernet.first_conv.conv.weight.clone()
    with torch.no_grad():
        network.first_conv.conv.weight.add_(1.0)
    assert torch.equal(supernet.first_conv.conv.weight, before)


def test_extract_rejects_invalid_subnets(supernet: torch.nn.Module) -> None:
    with pytest.raises(SupernetError, match="invalid subnet"):
        extract_subnet(supernet, {"ks": [9] * N_SLOTS, "e": [3] * N_SLOTS, "d": [2] * 5})
    with pytest.raises(SupernetError, match="width"):
        extract_subnet(supernet, {**MobileNetV3Space().smallest(), "w": 1.2})


def test_load_published_checkpoint_reinitialises_a_foreign_classifier(tmp_path: Path) -> None:
    imagenet = build_supernet(1000, seed=1)
    path = tmp_path / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": imagenet.state_dict()}, path)
    loaded, messages = load_supernet(path, 10)
    assert len(messages) == 1 and "1000" in messages[0] and "re-initialised" in messages[0]
    assert str(path) in messages[0]
    assert loaded.classifier.linear.weight.shape == (10, 1280)
    assert not torch.equal(loaded.classifier.linear.weight, imagenet.classifier.linear.weight[:10])
    saved = imagenet.state_dict()
    for key, value in loaded.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(value, saved[key]), key


def test_load_keeps_a_matching_classifier_and_old_names(tmp_path: Path) -> None:
    source = build_supernet(10, seed=2)
    # Older OFA releases named the layers mobile_inverted_conv.
    state = {
        key.replace(".conv.", ".mobile_inverted_conv.", 1) if key.startswith("blocks.") else key:
            value
        for key, value in source.state_dict().items()
    }
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": state, "epoch": 180}, path)
    loaded, messages = load_supernet(path, 10)
    assert messages == []
    _assert_same_weights(loaded, source)


def _write(path: Path, content: Any) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)


class _Foreign:
    pass


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such file"),
        ("truncated", "truncated or corrupt"),
        (os.urandom(4096), "truncated or corrupt"),
        (b"", "truncated or corrupt"),
        ({"weights": {}}, "no 'state_dict'"),
        (torch.zeros(3), "not a checkpoint dict"),
        ({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, "unexpected weight 'fc.weight'"),
        ({"state_dict": {"first_conv.conv.weight": torch.zeros(16, 3, 3, 3)}}, "weights missing"),
        ("width", "width_mult=1.2"),
        ({"state_dict": _Foreign()}, "Python objects"),
    ],
    ids=["missing", "truncated", "random", "empty", "no-state-dict", "tensor", "foreign-keys",
         "incomplete", "width", "pickled-object"],
)
def test_load_rejects_bad_files_in_one_line(
    supernet: torch.nn.Module, tmp_path: Path, content: Any, match: str
) -> None:
    path = tmp_path / "supernet.pth"
    if content == "truncated":
        torch.save({"state_dict": supernet.state_dict()}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "width":
        torch.save({"state_dict": build_supernet(10, width_mult=1.2).state_dict()}, path)
    elif content is not None:
        _write(path, content)
    with pytest.raises(SupernetError, match=match) as error:
        load_supernet(path, 10, width_mult=1.0)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message


# Training checks that do not depend on the width (resuming, recipes, the warm-up phase) use the
# narrowest supernet: a third of the time of width 1.0.
NARROW = 0.35


def _train(data: DataSplits, epochs: int, path: Path, width: float = NARROW) -> tuple[torch.nn.Module, dict[str, Any]]:
    net = build_supernet(10, width)
    summary = train_supernet(
        net, data, epochs=epochs, out_path=path, seed=3, batch_size=20,
        resolutions=(RESOLUTION,), n_random=1, progress=False,
    )
    return net, summary


@pytest.mark.parametrize("width", [1.0, 0.35])
def test_train_supernet_writes_a_loadable_checkpoint(tiny_digits: DataSplits, tmp_path: Path, width: float) -> None:
    path = tmp_path / "runs" / "supernet.pth"
    net, summary = _train(tiny_digits, 1, path, width)
    assert summary["epochs"] == summary["trained_epochs"] == 1
    assert 0.0 <= summary["top1_largest"] <= 100.0 and 0.0 <= summary["top1_smallest"] <= 100.0
    assert summary["seconds_per_epoch"] > 0
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["format"] == CHECKPOINT_FORMAT and checkpoint["epoch"] == 1
    assert (checkpoint["n_classes"], checkpoint["width_mult"]) == (10, width)
    assert sorted(p.name for p in path.parent.iterdir()) == ["supernet.pth"]  # no temp file left
    loaded, messages = load_supernet(path, 10, width)
    assert messages == []
    _assert_same_weights(loaded, net)


def test_resumed_training_matches_an_uninterrupted_run(
    tiny_digits: DataSplits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, _ = _train(tiny_digits, 2, tmp_path / "straight.pth")
    # A kill during the second epoch (the sandwich one: warm-up is half of 2 epochs).
    epochs_begun = []
    real_epoch = supernet_training._train_epoch

    def killed_in_second_epoch(*args: Any, **kwargs: Any) -> float:
        epochs_begun.append(1)
        if len(epochs_begun) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(supernet_training, "_train_epoch", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_digits, 2, tmp_path / "resumed.pth")
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed.pth", weights_only=True)["epoch"] == 1
    resumed, summary = _train(tiny_digits, 2, tmp_path / "resumed.pth")
    assert (summary["epochs"], summary["trained_epochs"]) == (2, 1)
    _assert_same_weights(resumed, straight)
    # A finished run has nothing left to do.
    again, summary = _train(tiny_digits, 2, tmp_path / "resumed.pth")
    assert summary["trained_epochs"] == 0
    _assert_same_weights(again, straight)


def test_train_refuses_to_overwrite_a_foreign_file(
    supernet: torch.nn.Module, tiny_digits: DataSplits, tmp_path: Path
) -> None:
    path = tmp_path / "ofa.pth"
    torch.save({"state_dict": supernet.state_dict()}, path)
    with pytest.raises(SupernetError, match="not an optnas supernet training checkpoint"):
        _train(tiny_digits, 1, path)
    with pytest.raises(SupernetError, match="3 outputs"):
        train_supernet(build_supernet(3), tiny_digits, epochs=1, out_path=tmp_path / "x.pth")


def test_training_checkpoint_records_its_recipe_and_refuses_another(tiny_digits: DataSplits, tmp_path: Path) -> None:
    path = tmp_path / "supernet.pth"
    _, summary = _train(tiny_digits, 1, path)
    recipe = torch.load(path, weights_only=True)["recipe"]
    assert recipe == summary["recipe"]
    assert recipe["epochs"] == 1 and recipe["warmup_epochs"] == 0 and recipe["n_random"] == 1
    with pytest.raises(SupernetError, match=r"another recipe.*epochs 1 instead of 2"):
        _train(tiny_digits, 2, path)


def test_warmup_trains_the_largest_network_alone(tiny_digits: DataSplits, tmp_path: Path) -> None:
    """OFA's kernel transformation matrices (7x7 -> 5x5 -> 3x3 centres) serve only subnets with
    smaller kernels: the largest network alone leaves them untouched, the sandwich rule trains them."""
    def matrices(net: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {name: value.detach().clone() for name, value in net.named_parameters() if "matrix" in name}

    for warmup, phase in ((1, "largest"), (0, "sandwich")):
        net = build_supernet(10, NARROW)
        before = matrices(net)
        train_supernet(net, tiny_digits, epochs=1, warmup_epochs=warmup, out_path=tmp_path / f"{phase}.pth", seed=3,
                       batch_size=20, resolutions=(RESOLUTION,), progress=False)
        history = torch.load(tmp_path / f"{phase}.pth", weights_only=True)["history"]
        assert [record["phase"] for record in history] == [phase]
        changed = [name for name, value in matrices(net).items() if not torch.equal(value, before[name])]
        assert (changed == []) == (phase == "largest"), changed
    with pytest.raises(ValueError, match="warmup_epochs must be between 0 and epochs"):
        train_supernet(net, tiny_digits, epochs=1, warmup_epochs=2, out_path=tmp_path / "x.pth")



def test_max_depth_constant_matches_ofa(supernet: torch.nn.Module) -> None:
    assert all(len(group) == MAX_DEPTH for group in supernet.block_group_info)
