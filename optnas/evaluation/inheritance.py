"""Scoring a candidate with inherited weights: extract it from the supernet, fine-tune it,
recalibrate its BN statistics, evaluate it on the validation split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from optnas.networks.costs import mobilenetv3_subnet
from optnas.networks.inference import evaluate, recalibrate_bn
from optnas.networks.supernet import extract_subnet
from optnas.training.loop import fine_tune

if TYPE_CHECKING:
    from optnas.data.datasets import DataSplits, ImageSet
    from optnas.training.recipes import FineTuneRecipe


def evaluate_candidate(
    supernet: nn.Module, subnet: dict[str, Any], data: DataSplits, recipe: FineTuneRecipe,
) -> tuple[float, nn.Module]:
    """Score a candidate: inherit its weights, fine-tune, recalibrate BN, evaluate.

    The same recipe gives the same accuracy (bit for bit on CPU; CUDA kernels may be
    nondeterministic).

    Args:
        supernet: the OFA supernet the weights come from (left unchanged).
        subnet: the candidate, a canonical mobilenetv3 subnet with its resolution ``r``.
        data: the dataset; the candidate is scored on its validation split.
        recipe: how it is fine-tuned (0 epochs allowed) and its BN recalibrated, on which device.

    Returns:
        The validation top-1 accuracy in % and the fine-tuned network.
    """
    model = inherited_network(supernet, subnet, data.train, recipe)
    return evaluate(model, data.valid, resolution=int(subnet["r"]), device=recipe.device), model


def inherited_network(
    supernet: nn.Module, subnet: dict[str, Any], train: ImageSet, recipe: FineTuneRecipe,
) -> nn.Module:
    """Return a subnet with the supernet's weights, fine-tuned and with its BN recalibrated.

    Args:
        supernet: the OFA supernet the weights come from (left unchanged).
        subnet: a mobilenetv3 subnet with its resolution ``r`` (of an eemobilenetv3 one,
            the backbone is taken).
        train: the training images.
        recipe: how it is fine-tuned (0 epochs allowed) and its BN recalibrated (``bn_images``,
            drawn with its seed), on which device.
    """
    backbone = mobilenetv3_subnet(subnet).backbone()
    resolution = backbone["r"]
    model = extract_subnet(supernet, backbone).to(recipe.device)
    fine_tune(model, train, recipe, resolution=resolution)
    # Also discards the BN statistics that SAM's second forward pass skewed.
    recalibrate_bn(model, train, resolution=resolution, n_images=recipe.bn_images, device=recipe.device,
                   seed=recipe.seed)
    return model
