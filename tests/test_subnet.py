"""A subnet knows its space: spaces return a :class:`Subnet`, files name their space, and only
``optnas/spaces/`` tells a subnet's space from its keys."""

from __future__ import annotations

import copy
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from optnas.artifacts import read_subnet, read_subnet_file, write_architecture
from optnas.spaces import EEMobileNetV3Space, MobileNetV3Space, NASBench201Space, Subnet, as_subnet
from optnas.spaces.mobilenetv3 import WIDTH_MULTS

PACKAGE = Path(__file__).resolve().parent.parent / "optnas"


def test_spaces_return_subnets_that_carry_their_space() -> None:
    space = EEMobileNetV3Space(resolutions=[32, 48])
    subnets = [space.smallest(), space.largest(), space.decode(space.encode(space.largest())),
               space.from_vector(space.to_vector(space.smallest())), *space.sample(np.random.default_rng(0), 3)]
    for subnet in subnets:
        assert isinstance(subnet, Subnet) and subnet.space is space and subnet.has_exits
        assert subnet.exit_stages == tuple(stage for stage, flag in enumerate(subnet["exits"]) if flag)
        assert subnet.n_exits == sum(subnet["exits"]) >= 1
        # Canonical already: canonicalising it again returns it as it is.
        assert space.canonical(subnet) is subnet
    largest = space.largest()
    backbone = largest.backbone()
    assert isinstance(backbone.space, MobileNetV3Space) and not backbone.has_exits
    assert backbone == MobileNetV3Space(resolutions=[32, 48]).largest() and backbone.backbone() is backbone
    assert backbone.exit_stages == () and backbone.n_exits == 0
    assert largest.exit_stages == (0, 1, 2, 3)
    assert largest.key == space.key(dict(largest)) == json.dumps(dict(largest), sort_keys=True)
    cell = NASBench201Space().smallest()
    assert isinstance(cell, Subnet) and cell.backbone() is cell and not cell.has_exits


def test_a_subnet_is_its_json_object() -> None:
    space = EEMobileNetV3Space(resolutions=[32])
    subnet = space.largest()
    plain = dict(subnet)
    assert subnet == plain and plain == subnet and type(plain) is dict
    # No key is added: the JSON text (user attributes, files) is the plain dict's.
    assert json.dumps(subnet) == json.dumps(plain) and json.dumps(subnet, indent=2) == json.dumps(plain, indent=2)
    assert set(subnet) == {"ks", "e", "d", "r", "w", "exits", "epsilon"}


@pytest.mark.parametrize("clone", [lambda s: pickle.loads(pickle.dumps(s)), copy.copy, copy.deepcopy])
def test_a_subnet_pickles_and_copies_with_its_space(clone) -> None:
    space = EEMobileNetV3Space(resolutions=[32, 48])
    subnet = space.sample(np.random.default_rng(1), 1)[0]
    subnet.backbone()  # a derived part, cached: not part of what is copied
    copied = clone(subnet)
    assert isinstance(copied, Subnet) and copied == subnet
    assert isinstance(copied.space, EEMobileNetV3Space) and copied.space.resolutions == [32, 48]
    assert copied.backbone() == subnet.backbone() and copied.exit_stages == subnet.exit_stages
    assert json.dumps(copied) == json.dumps(subnet)
    if clone is copy.deepcopy:
        # Spaces do not change: a deep copy shares it but not the lists.
        assert copied.space is space and copied["ks"] is not subnet["ks"]


def test_as_subnet_reads_json_of_any_space() -> None:
    ee = EEMobileNetV3Space(resolutions=[40]).largest()
    cell = NASBench201Space().largest()
    plain = MobileNetV3Space(resolutions=[40], width_mult=1.2).smallest()
    # Without a space key the keys tell (older files, a user's JSON); with one, it decides.
    for subnet in (ee, cell, plain):
        for raw in (dict(subnet), {"space": subnet.space.name, **subnet}):
            read = as_subnet(raw)
            assert read == subnet and "space" not in read and type(read.space) is type(subnet.space)
    assert as_subnet(ee) is ee
    # At its own width and resolution.
    assert as_subnet(dict(plain)).space.resolutions == [40] and as_subnet(dict(plain)).space.width_mult == 1.2
    assert as_subnet({**dict(ee), "space": "mobilenetv3"}).space.name == "mobilenetv3"
    with pytest.raises(ValueError, match="unknown space 'resnet'"):
        as_subnet({"space": "resnet", **cell})
    with pytest.raises(ValueError, match="JSON object, got list"):
        as_subnet([1, 2])
    with pytest.raises(ValueError, match="resolution 'r'"):
        as_subnet({key: value for key, value in plain.items() if key != "r"})
    with pytest.raises(ValueError, match="at least one intermediate exit"):
        as_subnet({**ee, "exits": [0, 0, 0, 0]})


def test_net_subnet_files_name_their_space_and_older_files_load(tmp_path: Path) -> None:
    subnet = EEMobileNetV3Space(resolutions=[32, 48]).sample(np.random.default_rng(2), 1)[0]
    write_architecture(tmp_path / "new", subnet, {"top1": 50.0})
    written = json.loads((tmp_path / "new" / "net.subnet").read_text())
    assert written == {"space": "eemobilenetv3", **subnet} and next(iter(written)) == "space"
    # A file written before files named their space: the subnet alone.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "net.subnet").write_text(json.dumps(dict(subnet), indent=2) + "\n")
    for folder in ("new", "old"):
        read = read_subnet(tmp_path / folder)
        assert read == subnet and isinstance(read.space, EEMobileNetV3Space) and read.space.resolutions == [subnet["r"]]
    cell = NASBench201Space().smallest()
    write_architecture(tmp_path / "cell", cell, {})
    assert json.loads((tmp_path / "cell" / "net.subnet").read_text()) == {"space": "nasbench201", "ops": cell["ops"]}
    with pytest.raises(ValueError, match=r"a nasbench201 net\.subnet"):
        read_subnet_file(tmp_path / "cell" / "net.subnet")


# What telling a subnet's space from its keys looks like; only optnas/spaces/ may do it.
_SNIFFING = re.compile(r"""["'](exits|ops|ks|epsilon)["'] (not )?in\b|is_early_exit|backbone_subnet\(""")


def test_no_key_sniffing_outside_the_spaces() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py")) if PACKAGE / "spaces" not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), start=1) if _SNIFFING.search(line)
    ]
    assert not found, "\n".join(found)
    # The pattern does find what it forbids.
    assert _SNIFFING.search('if "exits" in subnet:') and _SNIFFING.search("if 'ops' not in raw")


def test_the_width_gene_ranges_over_all_widths_or_a_chosen_set() -> None:
    every = MobileNetV3Space(search_width=True)
    assert every.distributions()["w"].choices == WIDTH_MULTS
    assert (every.smallest()["w"], every.largest()["w"]) == (WIDTH_MULTS[0], WIDTH_MULTS[-1])
    chosen = EEMobileNetV3Space(search_width=(0.75, 0.35))
    assert chosen.distributions()["w"].choices == (0.35, 0.75)
    assert {subnet["w"] for subnet in chosen.sample(np.random.default_rng(0), 20)} == {0.35, 0.75}
    with pytest.raises(ValueError, match="not in"):
        chosen.canonical({**chosen.smallest(), "w": 1.0})
    with pytest.raises(ValueError, match="searched widths"):
        MobileNetV3Space(search_width=(0.6,))
    # Without the gene the subnets take the supernet's one width.
    assert "w" not in MobileNetV3Space(width_mult=0.5).distributions()
    assert MobileNetV3Space(width_mult=0.5).smallest()["w"] == 0.5
