"""`optnas ood --subnet` reads the architecture with the one net.subnet reader: the file's own
resolution, never an assumed one."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from optnas.networks.supernet import extract_subnet
from optnas.spaces import MobileNetV3Space
from tests.conftest import invoke_cli


def test_a_subnet_file_without_its_resolution_is_refused(tmp_path: Path, supernet: nn.Module) -> None:
    subnet = MobileNetV3Space(resolutions=(24,)).smallest()
    network = extract_subnet(supernet, subnet)
    torch.save({"state_dict": network.state_dict()}, tmp_path / "ckpt.pth")
    without = {key: value for key, value in subnet.items() if key != "r"}
    (tmp_path / "net.subnet").write_text(json.dumps(without))
    result = invoke_cli("ood", "--subnet", str(tmp_path / "net.subnet"), "--weights", str(tmp_path / "ckpt.pth"),
                        "--corruptions", "gaussian_noise", "--severities", "1", "--n-images", "8", "--quiet")
    assert result.returncode == 2
    assert "resolution 'r'" in result.stderr

    (tmp_path / "net.subnet").write_text(json.dumps(subnet))
    result = invoke_cli("ood", "--subnet", str(tmp_path / "net.subnet"), "--weights", str(tmp_path / "ckpt.pth"),
                        "--corruptions", "gaussian_noise", "--severities", "1", "--n-images", "8", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["resolution"] == 24
