"""Early-exit networks: exit heads, the early-exit forward, every exit's outputs and the
figures they give under thresholds (their exact costs: :mod:`optnas.networks.exit_costs`).

An eemobilenetv3 network is the static OFA MobileNetV3 subnet (the *backbone*, whose final
expand, pooling, feature mix (an identity below width 1.0) and classifier form the *final
exit*) plus one :class:`ExitHead` after each backbone stage whose ``exits`` flag is 1.

Every exit has a *confidence* in [0, 1]: the sigmoid of the head's extra output (a learned
estimate of the probability that the exit's prediction is right). A sample leaves at the
first intermediate exit whose confidence reaches that exit's threshold ε; the final exit
takes all others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optnas.networks.costs import stage_outputs
from optnas.networks.exit_costs import _with_exits, head_layout


class ExitHead(nn.Module):
    """A small classifier on a stage's feature map: [max pool], 3x3 conv, BN, ReLU, pooling, linear.

    The linear layer has ``n_classes + 1`` outputs: the class logits and a confidence logit.

    Args:
        channels: channels of the stage output.
        size: side of the stage output.
        n_classes: classes of the task.
    """

    def __init__(self, channels: int, size: int, n_classes: int) -> None:
        super().__init__()
        pool, width = head_layout(channels, size)
        self.pool = nn.MaxPool2d(pool) if pool > 1 else nn.Identity()
        self.conv = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.linear = nn.Linear(width, n_classes + 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the class logits and the confidence logit of a batch of feature maps."""
        x = F.relu(self.bn(self.conv(self.pool(x))))
        out = self.linear(x.mean(dim=(2, 3)))
        return out[:, :-1], out[:, -1]


class EarlyExitNetwork(nn.Module):
    """A static MobileNetV3 backbone with exit heads after some of its stages.

    Calling the module returns every exit's outputs (what training and the batched
    evaluation need); :meth:`forward_early` is the real early-exit inference of one image.

    Args:
        backbone: the static subnet extracted from the supernet (``first_conv``, ``blocks``,
            ``final_expand_layer``, ``global_avg_pool``, ``feature_mix_layer``, ``classifier``).
        subnet: its canonical eemobilenetv3 subnet.
        n_classes: classes of the task.
        seed: seeds the heads' initialisation.
    """

    def __init__(self, backbone: nn.Module, subnet: dict[str, Any], n_classes: int, seed: int = 0) -> None:
        super().__init__()
        subnet = _with_exits(subnet)
        self.backbone = backbone
        stages = stage_outputs(subnet)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.heads = nn.ModuleList(
                ExitHead(stages[stage]["channels"], stages[stage]["size"], n_classes)
                for stage in subnet.exit_stages
            )
        # blocks[0] is the block before the stages; stage s ends after 1 + d0 + ... + ds blocks.
        self._ends = [1 + sum(subnet["d"][: stage + 1]) for stage in subnet.exit_stages]
        self.epsilon = [subnet["epsilon"][stage] for stage in subnet.exit_stages]
        self._backbone_frozen = False

    @property
    def n_exits(self) -> int:
        """Intermediate exits (the final one excluded)."""
        return len(self.heads)

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or restart) training the backbone: no gradients, BN statistics kept.

        Args:
            frozen: freeze it, or make it trainable again.
        """
        self._backbone_frozen = frozen
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> EarlyExitNetwork:
        super().train(mode)
        if self._backbone_frozen:
            self.backbone.eval()
        return self

    def _segments(self) -> list[tuple[int, int]]:
        starts = [0, *self._ends]
        return list(zip(starts, [*self._ends, len(self.backbone.blocks)]))

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        x = net.feature_mix_layer(net.global_avg_pool(net.final_expand_layer(x)))
        return net.classifier(x.view(x.size(0), -1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return the logits of every exit (final last) and the confidence logits of the heads."""
        x = self.backbone.first_conv(x)
        logits, confidences = [], []
        for index, (start, end) in enumerate(self._segments()):
            for block in self.backbone.blocks[start:end]:
                x = block(x)
            if index < self.n_exits:
                exit_logits, confidence = self.heads[index](x)
                logits.append(exit_logits)
                confidences.append(confidence)
        logits.append(self._final(x))
        return logits, confidences

    @torch.inference_mode()
    def forward_early(self, image: torch.Tensor, epsilon: Sequence[float] | None = None) -> tuple[torch.Tensor, int]:
        """Classify one image, computing only up to the exit it leaves at (in eval mode).

        Args:
            image: a batch of one image, ``1 x 3 x r x r``.
            epsilon: the intermediate exits' thresholds [default: the subnet's].

        Returns:
            The logits of the exit taken and its index (``n_exits`` for the final exit).
        """
        if image.shape[0] != 1:
            raise ValueError(f"forward_early takes one image at a time, got a batch of {image.shape[0]}")
        epsilon = self.epsilon if epsilon is None else list(epsilon)
        was_training = self.training
        self.eval()
        try:
            x = self.backbone.first_conv(image)
            for index, (start, end) in enumerate(self._segments()):
                for block in self.backbone.blocks[start:end]:
                    x = block(x)
                if index < self.n_exits:
                    logits, confidence = self.heads[index](x)
                    if torch.sigmoid(confidence).item() >= epsilon[index]:
                        return logits, index
            return self._final(x), self.n_exits
        finally:
            self.train(was_training)


def exit_decisions(confidence: torch.Tensor, epsilon: Sequence[float]) -> torch.Tensor:
    """Return the exit each sample leaves at: the first whose confidence reaches its threshold.

    Args:
        confidence: ``n_exits x N`` confidences in [0, 1] of the intermediate exits.
        epsilon: the ``n_exits`` thresholds.

    Returns:
        ``N`` exit indices; ``n_exits`` is the final exit.
    """
    thresholds = torch.as_tensor(list(epsilon), dtype=confidence.dtype, device=confidence.device)
    fired = confidence >= thresholds[:, None]
    fired = torch.cat([fired, torch.ones_like(fired[:1])], dim=0)
    # argmax returns the first maximal index: the first exit that fires.
    return fired.to(torch.uint8).argmax(dim=0)


@torch.inference_mode()
def exit_outputs(
    model: EarlyExitNetwork, images: Any, *, resolution: int, batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run every exit on a set of images (batched evaluation mode).

    Args:
        model: the early-exit network.
        images: an :class:`~optnas.data.datasets.ImageSet`.
        resolution: input resolution.
        batch_size: images per forward pass.
        device: where to run.

    Returns:
        ``predictions`` (``n_exits + 1 x N`` class indices), ``confidence``
        (``n_exits x N``, in [0, 1]) and the ``N`` labels, on the CPU.
    """
    inputs, labels = images.tensors(resolution, device=device)
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    was_training = model.training
    model.to(device).eval()
    predictions, confidences = [], []
    for start in range(0, len(labels), batch_size):
        logits, confidence = model(inputs[start : start + batch_size])
        predictions.append(torch.stack([exit_logits.argmax(dim=1) for exit_logits in logits]))
        if confidence:
            confidences.append(torch.sigmoid(torch.stack(confidence)))
    model.train(was_training)
    confidence = torch.cat(confidences, dim=1) if confidences else torch.zeros(0, len(labels))
    return torch.cat(predictions, dim=1).cpu(), confidence.float().cpu(), labels.cpu()


def exit_stats(
    predictions: torch.Tensor, confidence: torch.Tensor, labels: torch.Tensor,
    epsilon: Sequence[float], exit_macs: Sequence[float],
) -> dict[str, Any]:
    """Return the early-exit figures of a set of images under given thresholds.

    Args:
        predictions: ``n_exits + 1 x N`` class index of every exit, as from :func:`exit_outputs`.
        confidence: ``n_exits x N`` confidences.
        labels: the ``N`` labels.
        epsilon: the intermediate exits' thresholds.
        exit_macs: cumulative MACs (M) to leave at each exit, final included.

    Returns:
        ``exit_ratios`` (share of images leaving at each exit, summing to 1), ``exit_top1``
        (accuracy in % of each exit's classifier on all images), ``exit_macs``, ``avg_macs``
        (``Σ exit_ratios × exit_macs``) and ``top1`` (accuracy in % of the early-exit network).
    """
    n_outputs = predictions.shape[0]
    if len(exit_macs) != n_outputs or len(epsilon) != n_outputs - 1:
        raise ValueError(f"{n_outputs} exits need {n_outputs} exit_macs and {n_outputs - 1} thresholds")
    chosen = exit_decisions(confidence, epsilon)
    taken = predictions.gather(0, chosen[None, :])[0]
    counts = torch.bincount(chosen, minlength=n_outputs).tolist()
    ratios = [count / len(labels) for count in counts]
    return {
        "exit_ratios": ratios,
        "exit_top1": (100.0 * (predictions == labels[None, :]).double().mean(dim=1)).tolist(),
        "exit_macs": list(map(float, exit_macs)),
        "avg_macs": float(sum(ratio * macs for ratio, macs in zip(ratios, exit_macs))),
        "top1": 100.0 * (taken == labels).double().mean().item(),
    }
