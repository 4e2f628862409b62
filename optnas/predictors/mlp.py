"""A small multilayer perceptron trained with torch on the CPU.

torch is imported where it is used: the other predictors, and the samplers that fit them,
do without its seconds-long import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from sklearn.utils import check_random_state

from optnas.predictors.base import Predictor, _seed, _standardise, _UnitCube

if TYPE_CHECKING:
    import torch


class MLPPredictor(Predictor):
    """A ReLU multilayer perceptron, trained full-batch with Adam and a cosine schedule.

    Genes are scaled to [0, 1] and the target standardised, so that one learning rate
    suits every search space and metric. The loss is SmoothL1, as in the reference. The
    reference's recipe (3 x 300 units, dropout 0.2, no weight decay, 2,000 epochs, best
    epoch on a 20% hold-out) ranked held-out architectures of the synthetic MobileNetV3
    benchmark worse (τ 0.25 / 0.58 / 0.79 on 25 / 100 / 500 samples, against 0.39 / 0.77 /
    0.86 with these defaults) and trained 15x slower: weight decay, not early stopping,
    keeps this network from overfitting a few hundred samples.

    Args:
        hidden_layer_sizes: the width of each hidden layer.
        dropout: the dropout rate after each hidden layer but the first.
        epochs: full-batch training steps.
        learning_rate: Adam's initial learning rate, decayed to 0 by a cosine schedule.
        weight_decay: Adam's L2 penalty.
        validation_fraction: when positive, hold this share of the samples out and keep
            the weights of the epoch with the lowest validation loss (the reference holds
            out 20%); 0 trains on every sample and keeps the last weights.
        random_state: seeds the weights, dropout and validation split.
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (128, 128, 128),
        dropout: float = 0.0,
        epochs: int = 500,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-2,
        validation_fraction: float = 0.0,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        import torch

        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        rng = check_random_state(self.random_state)
        self.scaler_ = _UnitCube(X)
        self.y_mean_, self.y_scale_ = _standardise(y)
        Z = torch.as_tensor(self.scaler_(X), dtype=torch.float32)
        t = torch.as_tensor((y - self.y_mean_) / self.y_scale_, dtype=torch.float32)[:, None]
        # At least one sample is left to train on, whatever the fraction and sample count.
        n_validation = min(round(self.validation_fraction * len(X)), len(X) - 1)
        order = torch.as_tensor(rng.permutation(len(X)))
        train, validation = order[n_validation:], order[:n_validation]
        # fork_rng keeps the seeding local: the caller's torch generator is left untouched.
        with torch.random.fork_rng(devices=[]), _one_thread():
            torch.manual_seed(_seed(rng))
            self.model_ = self._network(Z.shape[1])
            self._train(Z[train], t[train], Z[validation], t[validation])
        self.model_.eval()

    def _network(self, n_inputs: int) -> torch.nn.Sequential:
        import torch

        layers: list[torch.nn.Module] = []
        for index, width in enumerate(self.hidden_layer_sizes):
            layers += [torch.nn.Linear(n_inputs, width), torch.nn.ReLU()]
            if index > 0 and self.dropout > 0:
                layers.append(torch.nn.Dropout(self.dropout))
            n_inputs = width
        layers.append(torch.nn.Linear(n_inputs, 1))
        return torch.nn.Sequential(*layers)

    def _train(
        self, Z: torch.Tensor, t: torch.Tensor, Z_val: torch.Tensor, t_val: torch.Tensor
    ) -> None:
        import torch

        optimizer = torch.optim.Adam(
            self.model_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
        loss_fn = torch.nn.SmoothL1Loss()
        best_loss, best_state = np.inf, None
        for _ in range(self.epochs):
            self.model_.train()
            optimizer.zero_grad()
            loss_fn(self.model_(Z), t).backward()
            optimizer.step()
            schedule.step()
            if len(Z_val):
                self.model_.eval()
                with torch.no_grad():
                    loss = loss_fn(self.model_(Z_val), t_val).item()
                if loss < best_loss:
                    best_loss = loss
                    best_state = {k: v.clone() for k, v in self.model_.state_dict().items()}
        if best_state is not None:
            self.model_.load_state_dict(best_state)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad(), _one_thread():
            out = self.model_(torch.as_tensor(self.scaler_(X), dtype=torch.float32))
        return out.numpy()[:, 0].astype(np.float64) * self.y_scale_ + self.y_mean_


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: networks this small gain nothing from intra-op threads, and
    threads that spin for a core shared with other jobs slow training down up to tenfold."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
