"""--optim and --rho reach early-exit candidates: the backbone's fine-tuning and the exits' training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import optnas.training.loop as loop
from optnas.config import SearchConfig
from optnas.evaluation.candidate import CandidateEvaluator


@pytest.mark.parametrize("optim", ["sgd", "asam"])
def test_early_exit_candidates_use_the_chosen_optimiser(optim: str, tmp_path: Path, supernet: nn.Module,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save({"state_dict": supernet.state_dict()}, tmp_path / "supernet.pth")
    # 1338 of the 1438 training images held out: the backbone and the exits train on 100 (two
    # steps each); what is checked is which optimiser each training builds, once per training.
    config = SearchConfig(search_space="eemobilenetv3", supernet_path=str(tmp_path / "supernet.pth"), optim=optim,
                          rho=0.3 if optim != "sgd" else None, n_epochs=1, warmup_ee_epochs=1, ee_epochs=0,
                          vld_size=1338).validate()
    used = []
    make_optimizer = loop.make_optimizer

    def recording(name: str, params, **options):
        used.append((name, options["rho"]))
        return make_optimizer(name, params, **options)

    monkeypatch.setattr(loop, "make_optimizer", recording)
    stats, _ = CandidateEvaluator(config, tmp_path).evaluate(config.make_space().smallest())
    assert used == [(optim, config.rho)] * 2  # the backbone's fine-tuning, then the exits' training
    assert 0 <= stats["top1"] <= 100
