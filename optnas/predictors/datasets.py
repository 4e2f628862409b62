"""A synthetic accuracy benchmark shaped like the OFA MobileNetV3 gene encoding."""

from __future__ import annotations

import numpy as np

from optnas.spaces.mobilenetv3 import MAX_DEPTH, N_SLOTS, N_STAGES


def make_mbv3_like(
    n_samples: int,
    n_resolutions: int = 3,
    noise: float = 0.2,
    random_state: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw canonical MobileNetV3 encodings and a smooth, nonlinear top-1 error for them.

    The encoding has 5 depth genes, 20 kernel-size and 20 expand-ratio genes (three levels
    each) and one resolution gene; slots past a stage's depth are reset to 0, as in the
    canonical subnet, so many genes are constant or gated by a depth gene. The error falls
    with the log of a MAC-like capacity (stage width x expand ratio x kernel area, summed
    over active layers) and with the resolution, with diminishing returns, plus Gaussian
    noise.

    Args:
        n_samples: how many architectures to draw.
        n_resolutions: the levels of the resolution gene.
        noise: the standard deviation of the noise, in error points.
        random_state: the seed.
    """
    rng = np.random.default_rng(random_state)
    depth = rng.integers(3, size=(n_samples, N_STAGES))
    kernel = rng.integers(3, size=(n_samples, N_SLOTS))
    expand = rng.integers(3, size=(n_samples, N_SLOTS))
    resolution = rng.integers(n_resolutions, size=(n_samples, 1))
    slot_layer = np.tile(np.arange(MAX_DEPTH), N_STAGES)
    slot_stage = np.repeat(np.arange(N_STAGES), MAX_DEPTH)
    active = slot_layer < 2 + depth[:, slot_stage]
    kernel *= active
    expand *= active

    kernel_area = np.array([3.0, 5.0, 7.0])[kernel] ** 2
    expand_ratio = np.array([3.0, 4.0, 6.0])[expand]
    stage_width = np.array([1.0, 1.5, 2.0, 3.0, 4.0])[slot_stage]
    capacity = (active * stage_width * expand_ratio * (1.0 + kernel_area / 16.0)).sum(axis=1)
    res = resolution[:, 0] / max(n_resolutions - 1, 1)
    error = (
        32.0
        - 6.0 * np.log(capacity / 150.0)
        - 3.0 * res
        + 1.5 * (res - 0.5) ** 2 * np.log(capacity / 150.0)
        + noise * rng.standard_normal(n_samples)
    )
    X = np.hstack([depth, kernel, expand, resolution])
    return X, error
