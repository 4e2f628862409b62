"""Sharpness-aware minimisation (SAM, Foret et al. 2021) and its adaptive form (ASAM, Kwon et al. 2021).

Each step climbs to the worst point of a ball of radius ρ around the weights (for ASAM, a
ball scaled element-wise by |w|), takes the gradient there, and applies it to the original
weights with the base optimiser. A step therefore costs two forward/backward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from optnas.errors import OptionError
from optnas.training import OPTIMIZERS

# Radii of the published recipes: SAM's ρ is absolute, ASAM's relative to |w| and larger.
DEFAULT_RHO = {"sam": 0.05, "asam": 0.5}


class SAM(torch.optim.Optimizer):
    """Wraps a base optimiser so that each step minimises the sharpness-aware loss.

    Args:
        params: the parameters to train.
        base_optimizer: builds the base optimiser from parameter groups (e.g. SGD).
        rho: radius of the neighbourhood (> 0).
        adaptive: ASAM: scale the neighbourhood by each weight's magnitude.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        base_optimizer: Callable[[list[dict]], torch.optim.Optimizer],
        *,
        rho: float,
        adaptive: bool = False,
    ) -> None:
        if not rho > 0:
            raise OptionError("{rho} must be positive, got {value}", value=rho)
        super().__init__(params, {"rho": rho, "adaptive": adaptive})
        self.base_optimizer = base_optimizer(self.param_groups)
        # Share the groups so that learning-rate schedulers on this optimiser reach the base one.
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self) -> None:
        """Move the weights to the worst point of the neighbourhood (gradients must be set)."""
        scale = self.param_groups[0]["rho"] / (self._grad_norm() + 1e-12)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = (p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale
                p.add_(e_w)
                self.state[p]["e_w"] = e_w

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to the original weights and apply the base step with the gradient taken there."""
        for group in self.param_groups:
            for p in group["params"]:
                if "e_w" in self.state[p]:
                    p.sub_(self.state[p].pop("e_w"))
        self.base_optimizer.step()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """Do a full SAM step; ``closure`` recomputes the loss and its gradients.

        Args:
            closure: zeroes the gradients, runs forward and backward, returns the loss.
        """
        if closure is None:
            raise ValueError("SAM needs a closure that recomputes the loss")
        with torch.enable_grad():
            loss = closure()
        self.first_step()
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss

    def _grad_norm(self) -> torch.Tensor:
        norms = [
            ((p.abs() if group["adaptive"] else 1.0) * p.grad).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            return torch.zeros(())
        return torch.stack([n.to(norms[0].device) for n in norms]).norm(p=2)


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    rho: float | None = None,
) -> torch.optim.Optimizer:
    """Return SGD, or SAM/ASAM around SGD, with the given hyperparameters.

    Args:
        name: ``sgd``, ``sam`` or ``asam``.
        params: the parameters to train.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        rho: SAM/ASAM radius [default: 0.05 for SAM, 0.5 for ASAM]; ignored by SGD.
    """
    if name not in OPTIMIZERS:
        raise OptionError("{optim} must be one of {optimizers}, got {value!r}", optimizers=list(OPTIMIZERS), value=name)

    def sgd(groups: Iterable) -> torch.optim.Optimizer:
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)

    if name == "sgd":
        return sgd(params)
    return SAM(params, sgd, rho=DEFAULT_RHO[name] if rho is None else rho, adaptive=name == "asam")
