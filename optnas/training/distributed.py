"""Data-parallel supernet training on many processes (``torchrun``): the process group, each
process's share of every batch, gradient and BN-statistics averaging.

Without ``torchrun`` (no ``WORLD_SIZE`` above 1 in the environment) nothing here changes what a
single process does: :func:`launched_process_group` yields the device it was given and
:func:`current_ranks` reports one process.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# Bits of the per-step fingerprint of the trained subnets: N times a 16-bit value stays an exact
# float32 integer for any N below 256.
_FINGERPRINT_MASK = 0xFFFF


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes training together.

    Args:
        rank: this process's index, 0 for the one that validates, logs and writes checkpoints.
        size: the number of processes (the world size).
    """

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process validates, shows progress and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.size > 1


def current_ranks() -> Ranks:
    """Return this process's rank and the world size of the initialised process group (one process if none)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched_ranks() -> Ranks:
    """Return the rank and world size ``torchrun`` launched this process with (``RANK``, ``WORLD_SIZE``)."""
    return Ranks(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


@contextlib.contextmanager
def launched_process_group(device: str | torch.device) -> Iterator[str | torch.device]:
    """Join the process group ``torchrun`` launched this process in, for the block.

    With ``WORLD_SIZE`` above 1 in the environment (and no process group yet), initialises
    ``torch.distributed`` from it (gloo for a CPU ``device``, NCCL for CUDA, where process
    ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``), and destroys the group after the block. Otherwise
    it does nothing and yields ``device`` unchanged. CPU threads are left as they are: torchrun
    gives each process ``OMP_NUM_THREADS`` (1 unless set), which ``--threads`` overrides.

    Args:
        device: the device asked for (``--device``): ``cpu`` or ``cuda`` for many processes.

    Yields:
        The device of this process.

    Raises:
        ValueError: a device that many processes cannot share (an explicit GPU index, MPS).
    """
    launched = launched_ranks()
    if not launched.distributed or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    parsed = torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if parsed.type == "cuda":
        if parsed.index is not None:
            raise ValueError(f"--device {device} under torchrun with {launched.size} processes: give --device cuda "
                             "(each process uses the GPU of its LOCAL_RANK)")
        parsed = torch.device("cuda", local_rank)
        torch.cuda.set_device(parsed)
        backend = "nccl"
    elif parsed.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"--device {device} trains in one process only; under torchrun give --device cpu or cuda")
    dist.init_process_group(backend, rank=launched.rank, world_size=launched.size)
    try:
        yield parsed
    finally:
        dist.destroy_process_group()


def check_batch_split(batch_size: int, size: int) -> None:
    """Refuse a batch that does not split into equal parts over ``size`` processes.

    Args:
        batch_size: images per step over all processes.
        size: the number of processes.

    Raises:
        ValueError: ``batch_size`` is not a multiple of ``size``.
    """
    if batch_size % size:
        raise ValueError(f"the batch of {batch_size} images does not split evenly over {size} processes; "
                         f"give a batch size that is a multiple of {size}")


def shard_indices(order: torch.Tensor, batch_size: int, ranks: Ranks) -> torch.Tensor:
    """Return this process's images of an epoch: its part of every global batch, in step order.

    The epoch's order (the same on every process) is cut into global batches of
    ``batch_size``; each is cut into ``ranks.size`` equal contiguous parts, and this process
    takes part ``ranks.rank``. The last, smaller batch drops its last ``len % size`` images so
    that every process takes as many images, and as many steps, as every other: a process
    that ran out of batches would leave the others waiting in a collective forever.

    Args:
        order: the epoch's image indices, in visiting order.
        batch_size: images per step over all processes; a multiple of ``ranks.size``.
        ranks: this process's rank and the world size.
    """
    check_batch_split(batch_size, ranks.size)
    share = batch_size // ranks.size
    full = len(order) // batch_size
    whole = order[: full * batch_size].view(full, batch_size)[:, ranks.rank * share: (ranks.rank + 1) * share]
    rest = order[full * batch_size:]
    last = len(rest) // ranks.size
    return torch.cat([whole.reshape(-1), rest[ranks.rank * last: (ranks.rank + 1) * last]])


def fingerprint(subnets: Sequence[dict[str, Any]]) -> int:
    """Return a 16-bit checksum of the subnets a step trains (equal on every process when they agree).

    Args:
        subnets: the step's subnets, in training order.
    """
    text = repr([sorted((key, value) for key, value in subnet.items()) for subnet in subnets])
    return zlib.crc32(text.encode()) & _FINGERPRINT_MASK


def average_gradients(model: nn.Module, ranks: Ranks, check: int) -> None:
    """Replace every gradient by its mean over the processes, in one ``all_reduce``.

    A step trains a few subnets of the supernet, so some parameters get no gradient (None):
    they are sent as zeros, keeping every process's buffer the same size, and left None after,
    so SGD skips them (no weight decay or momentum) exactly as one process would. This relies
    on every process training the same subnets; ``check`` (:func:`fingerprint` of the step's
    subnets) rides in the same buffer and a mismatch raises instead of silently averaging
    gradients of different networks.

    Args:
        model: the supernet, after the step's backward passes.
        ranks: this process's rank and the world size.
        check: the step's subnet fingerprint.

    Raises:
        RuntimeError: the processes trained different subnets.
    """
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    device = parameters[0].device
    pieces = [parameter.grad.reshape(-1) if parameter.grad is not None
              else torch.zeros(parameter.numel(), device=device, dtype=parameter.dtype) for parameter in parameters]
    buffer = torch.cat([*pieces, torch.tensor([float(check)], device=device)])
    dist.all_reduce(buffer)
    if int(buffer[-1].item()) != check * ranks.size:
        raise RuntimeError(f"process {ranks.rank}: the processes trained different subnets in one step "
                           "(their sampling is no longer in step)")
    buffer.div_(ranks.size)
    start = 0
    for parameter in parameters:
        end = start + parameter.numel()
        if parameter.grad is not None:
            parameter.grad.copy_(buffer[start:end].view_as(parameter.grad))
        start = end


def average_buffers(model: nn.Module) -> None:
    """Average the floating-point buffers (BN running statistics) over the processes.

    Each process's BN layers normalise with the statistics of its own part of the batch and
    update their running statistics from it; averaging them makes every process hold the same
    state (the checkpoint's), a mean over more images than any one process saw.

    Args:
        model: the supernet.
    """
    buffers = [buffer for buffer in model.buffers() if buffer.is_floating_point()]
    # One collective for them all: hundreds of small ones cost more than the data.
    flat = _flat(buffers)
    dist.all_reduce(flat)
    _unflat(flat.div_(current_ranks().size), buffers)


def broadcast_state(model: nn.Module) -> None:
    """Give every process the first process's parameters and buffers (a fresh run's initialisation).

    Args:
        model: the supernet.
    """
    tensors = list(model.state_dict().values())
    # In the state dict's order: a set's order may differ between processes, pairing a float
    # broadcast with an integer one.
    for dtype in dict.fromkeys(tensor.dtype for tensor in tensors):
        group = [tensor for tensor in tensors if tensor.dtype == dtype]
        flat = _flat(group)
        dist.broadcast(flat, 0)
        _unflat(flat, group)


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([tensor.reshape(-1) for tensor in tensors])


def _unflat(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    start = 0
    for tensor in tensors:
        tensor.copy_(flat[start: start + tensor.numel()].view_as(tensor))
        start += tensor.numel()


def mean_over_processes(value: float, device: str | torch.device) -> float:
    """Return the mean of a number over the processes (``value`` itself in one process).

    Args:
        value: this process's number.
        device: this process's device (NCCL reduces tensors on the GPU only).
    """
    ranks = current_ranks()
    if not ranks.distributed:
        return value
    total = torch.tensor(value, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.item() / ranks.size


def from_main(value: Any) -> Any:
    """Return the first process's ``value`` on every process (``value`` itself in one process).

    Args:
        value: a picklable object.
    """
    if not current_ranks().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here (nothing in one process)."""
    if current_ranks().distributed:
        dist.barrier()
