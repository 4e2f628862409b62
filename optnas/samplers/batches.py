"""How many candidates each batch of a :class:`~optnas.samplers.surrogate.SurrogateSampler` holds.

Batch ``k`` starts at trial number ``first_k`` (``first_1 = n_doe``) and holds ``size_k``
trials, so ``first_{k+1} = first_k + size_k``. A batch's size is a function of the trials
numbered below its first one, all finished when it is asked for: every worker derives the same
numbering from the same trials, without locks, as it derives the same batch.

* :class:`FixedBatches`: every batch the same size (an optnas search's ``--n-iter``).
* :class:`ConcurrentBatches`: as many candidates as trials ran at once lately, at most a
  bound: one per step in a sequential study, which then learns from every trial before the
  next, as ``GPSampler`` does, and a batch per round of parallel workers, which then need not
  wait for each other's trials one by one.
"""

from __future__ import annotations

import abc

from optuna.trial import FrozenTrial


class BatchSizes(abc.ABC):
    """The size of each batch, from the trials before it.

    Attributes:
        most: the largest size; the size of a stored batch that did not record its own.
    """

    most: int

    @abc.abstractmethod
    def size(self, earlier: list[FrozenTrial]) -> int:
        """Return the size (at least 1) of the batch after ``earlier``.

        Args:
            earlier: every trial numbered below the batch, each finished or not yet started.
        """


class FixedBatches(BatchSizes):
    """Batches of ``size`` candidates.

    Args:
        size: candidates per batch.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a batch holds at least one candidate, got {size}")
        self.most = size

    def size(self, earlier: list[FrozenTrial]) -> int:
        return self.most

    def __repr__(self) -> str:
        return f"FixedBatches({self.most})"


class ConcurrentBatches(BatchSizes):
    """As many candidates as trials ran at once among the latest ``window`` trials, at most ``most``.

    A trial runs from its start (when it was asked for, so a worker waiting for a batch
    counts) to its completion; intervals that only touch do not overlap. Trials without both
    times (enqueued, or added with ``Study.add_trial`` without times) do not count; with
    none left the size is 1.

    Args:
        most: the largest batch.
        window: the latest trials, by number, whose running intervals are looked at (None:
            twice ``most``).
    """

    def __init__(self, most: int, window: int | None = None) -> None:
        if most < 1:
            raise ValueError(f"a batch holds at least one candidate, got {most}")
        self.most = most
        self.window = 2 * most if window is None else window

    def size(self, earlier: list[FrozenTrial]) -> int:
        ran = sorted((t for t in earlier if t.datetime_start is not None and t.datetime_complete is not None),
                     key=lambda t: t.number)
        latest = ran[-self.window:]
        if not latest:
            return 1
        begin = min(t.datetime_start for t in latest)
        end = max(t.datetime_complete for t in latest)
        # Every trial running at some moment of the latest trials' span, not only theirs.
        events = sorted((time, change)
                        for t in ran if t.datetime_start < end and t.datetime_complete > begin
                        for time, change in ((t.datetime_start, 1), (t.datetime_complete, -1)))
        # At equal times the -1 sorts first: a trial that ends as another starts does not overlap it.
        running = peak = 0
        for _, change in events:
            running += change
            peak = max(peak, running)
        return min(self.most, max(1, peak))

    def __repr__(self) -> str:
        return f"ConcurrentBatches({self.most}, window={self.window})"
