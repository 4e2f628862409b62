"""The early-exit MobileNetV3 space: an OFA MobileNetV3 backbone and where its exits sit.

Besides the backbone genes of :class:`~optnas.spaces.MobileNetV3Space`, each of the
backbone's stages 1 to 4 (of five) gets two genes: ``exit1..exit4`` (0 or 1: an exit head
after that stage) and ``eps1..eps4`` (that exit's confidence threshold, one of
:data:`EPSILONS`). Stage 5 is always followed by the final classifier. A subnet is the
mobilenetv3 subnet plus ``"exits"`` (4 ints) and ``"epsilon"`` (4 floats); an absent exit's
threshold is stored as ``EPSILONS[0]`` so that equal networks have equal keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from optnas.spaces.base import Subnet
from optnas.spaces.mobilenetv3 import MobileNetV3Space

N_EXITS = 4
# The keys an eemobilenetv3 subnet adds to its backbone's.
_EXIT_KEYS = ("exits", "epsilon")
# Thresholds on an exit's confidence (a probability); 1.0 would never fire on most samples.
EPSILONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class EEMobileNetV3Space(MobileNetV3Space):
    """OFA MobileNetV3 with early exits after any of its stages 1-4 (at least one).

    Genes: the mobilenetv3 genes, then ``exit1..exit4`` and ``eps1..eps4``. Parameters whose
    exits are all 0 decode to an exit after stage 4 alone (the cheapest repair that keeps
    the backbone); :meth:`canonical` refuses such a subnet given by a user.

    Args:
        width_mult: the supernet's width multiplier, one of
            :data:`~optnas.spaces.mobilenetv3.WIDTH_MULTS`.
        resolutions: the allowed input resolutions.
        search_width: make the width multiplier a gene (see
            :class:`~optnas.spaces.MobileNetV3Space`).
    """

    name = "eemobilenetv3"
    has_exits = True
    # Quantization of the exit heads and their confidences is not modelled yet.
    supports_int8 = False

    def distributions(self) -> dict[str, BaseDistribution]:
        genes = super().distributions()
        for index in range(1, N_EXITS + 1):
            genes[f"exit{index}"] = CategoricalDistribution((0, 1))
        for index in range(1, N_EXITS + 1):
            genes[f"eps{index}"] = CategoricalDistribution(EPSILONS)
        return genes

    def decode(self, params: dict[str, Any]) -> Subnet:
        exits = [int(params[f"exit{index}"]) for index in range(1, N_EXITS + 1)]
        if not any(exits):
            exits[-1] = 1
        return self.canonical(
            {
                **self._backbone().decode(params),
                "exits": exits,
                "epsilon": [params[f"eps{index}"] for index in range(1, N_EXITS + 1)],
            }
        )

    def encode(self, subnet: dict[str, Any]) -> dict[str, Any]:
        subnet = self.canonical(subnet)
        params = super().encode(subnet)
        params.update({f"exit{i + 1}": flag for i, flag in enumerate(subnet["exits"])})
        params.update({f"eps{i + 1}": value for i, value in enumerate(subnet["epsilon"])})
        return params

    def _canonical_values(self, subnet: dict[str, Any]) -> dict[str, Any]:
        backbone = super()._canonical_values(subnet)
        for key in _EXIT_KEYS:
            if key not in subnet:
                raise ValueError(f"eemobilenetv3 subnet lacks the key '{key}'")
            if not isinstance(subnet[key], (list, tuple)) or len(subnet[key]) != N_EXITS:
                raise ValueError(f"'{key}' must be a list of {N_EXITS} values, got {subnet[key]!r}")
        exits = []
        for flag in subnet["exits"]:
            if isinstance(flag, bool) or flag not in (0, 1):
                raise ValueError(f"'exits' holds {flag!r}; each entry is 0 or 1")
            exits.append(int(flag))
        if not any(exits):
            raise ValueError("an eemobilenetv3 subnet needs at least one intermediate exit")
        epsilon = []
        for flag, value in zip(exits, subnet["epsilon"]):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"'epsilon' holds {value!r}, not a number")
            matches = [choice for choice in EPSILONS if abs(choice - value) < 1e-9]
            if not matches:
                raise ValueError(f"'epsilon' holds {value}, allowed values are {list(EPSILONS)}")
            epsilon.append(matches[0] if flag else EPSILONS[0])
        return {**backbone, "exits": exits, "epsilon": epsilon}

    def canonical_vectors(self, vectors: np.ndarray) -> np.ndarray:
        vectors = super().canonical_vectors(vectors)
        first_exit = len(self.gene_names()) - 2 * N_EXITS
        exits = vectors[:, first_exit : first_exit + N_EXITS]
        exits[exits.sum(axis=1) == 0, -1] = 1
        thresholds = vectors[:, first_exit + N_EXITS :]
        thresholds[exits == 0] = 0
        return vectors

    def smallest(self) -> Subnet:
        # One exit, after the first stage: the cheapest path out of the network.
        return self.canonical(
            {**self._backbone().smallest(), "exits": [1, 0, 0, 0], "epsilon": [EPSILONS[0]] * N_EXITS}
        )

    def largest(self) -> Subnet:
        return self.canonical(
            {**self._backbone().largest(), "exits": [1] * N_EXITS, "epsilon": [EPSILONS[-1]] * N_EXITS}
        )

    def backbone_of(self, subnet: Subnet) -> Subnet:
        return Subnet({key: value for key, value in subnet.items() if key not in _EXIT_KEYS}, self._backbone())

    def exit_stages_of(self, subnet: Subnet) -> tuple[int, ...]:
        return tuple(stage for stage, flag in enumerate(subnet["exits"]) if flag)

    def _backbone(self) -> MobileNetV3Space:
        # The parent's decode, smallest and largest call self.canonical, which here needs the
        # exits: the plain backbone space builds the backbone part instead. Built once: every
        # decode and every backbone of a subnet takes it.
        if "_backbone_space" not in self.__dict__:
            self._backbone_space = MobileNetV3Space(self.width_mult, self.resolutions, self.search_width)
        return self._backbone_space
