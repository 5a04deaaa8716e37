"""The input pipeline: deterministic epoch batches through a ``DataLoader`` with workers.

Exact resume and any number of workers go together because nothing about a batch
depends on which process made it:

- the order of an epoch is a permutation drawn from ``(seed, epoch)``
  (:class:`EpochBatches`), and a resumed run starts at the batch it stopped at;
- each item's random augmentation is drawn from a generator seeded by
  ``(seed, epoch, position in the epoch)`` (:class:`SeededItems`), not from a worker's
  generator;
- distributed ranks take disjoint, interleaved shares of every batch.

A sample that cannot be read (a corrupt image file) is reported from the worker as a
:class:`BadItem` naming it, so the training process raises one clear
:class:`~onefit.data.base.DataError` with the file's path (or skips it with a warning,
``bad_items="skip"``), never a worker's traceback.

Example:
    >>> batches = EpochBatches(10, batch_size=4, seed=0)
    >>> batches.set_epoch(0)
    >>> [[index for index, _ in batch] for batch in batches]
    [[4, 1, 7, 5], [3, 9, 0, 8]]
    >>> batches.set_epoch(0, start=1)
    >>> len(batches), [index for index, _ in next(iter(batches))]
    (1, [3, 9, 0, 8])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from onefit.data.base import DataError
from onefit.data.splits import Samples
from onefit.errors import UserError

Key = tuple[int, int]  # (index in the split, seed of the item's augmentation)
BAD_ITEM_POLICIES = ("error", "skip")
_MIX = 1_000_003  # a prime: seeds of neighbouring epochs and positions never collide


def item_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the augmentation of the item at ``position`` of ``epoch``."""
    return ((seed * _MIX + epoch) * _MIX + position) % (2**63)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``range(n)`` for ``epoch``: a function of (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class EpochBatches(Sampler[list[Key]]):
    """The full batches of one epoch for one process, from batch ``start`` on.

    Call :meth:`set_epoch` before iterating (as ``DistributedSampler``); the sampler is
    read in the training process, so persistent workers see the new epoch too.
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.steps = n // batch_size  # the last partial batch is dropped, as before
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[Key]]:
        order = epoch_order(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        size = self.batch_size
        for b in range(self.start, self.steps):
            positions = range(b * size + self.rank, (b + 1) * size, self.world_size)
            yield [(int(order[p]), item_seed(self.seed, self.epoch, p)) for p in positions]


class InOrder(Sampler[list[Key]]):
    """Batches of ``range(n)`` (or of ``indices``) in order, the last one partial, at most
    ``limit`` of them (evaluation, calibration)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        limit: int | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.indices = list(range(n)) if indices is None else list(indices)
        self.batch_size = batch_size
        batches = -(-len(self.indices) // batch_size)
        self.batches = batches if limit is None else min(batches, limit)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[Key]]:
        size = self.batch_size
        for b in range(self.batches):
            yield [(i, 0) for i in self.indices[b * size : (b + 1) * size]]


@dataclass(frozen=True)
class BadItem:
    """A sample that could not be read, and why (the message names the file)."""

    message: str


class SeededItems(Dataset[Any]):
    """``dataset`` indexed by ``(index, seed)``: the item is made under ``seed``.

    The global torch generator is forked around the item, so seeding it neither leaks
    into the training process (no workers) nor depends on the worker's state.
    """

    def __init__(self, dataset: Samples) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Key) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                return self.dataset[index]
            except DataError as error:
                return BadItem(str(error))


class Collate:
    """Stacks ``(input, target)`` items into a batch ``(inputs, targets, problems)``;
    ``problems`` names the items that could not be read (they are left out)."""

    def __init__(self, target_dtype: torch.dtype | None = None) -> None:
        self.target_dtype = target_dtype

    def __call__(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        problems = [item.message for item in items if isinstance(item, BadItem)]
        good = [item for item in items if not isinstance(item, BadItem)]
        if not good:
            return torch.empty(0), torch.empty(0), problems
        inputs = torch.stack([torch.as_tensor(x) for x, _ in good])
        targets = torch.stack([torch.as_tensor(y) for _, y in good])
        if self.target_dtype is not None:
            targets = targets.to(self.target_dtype)
        return inputs, targets, problems


def default_workers(world_size: int = 1) -> int:
    """Loader workers per process: one core of each process's share is left for the
    training step itself, at most 8 (more rarely helps with these transforms)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(0, min(8, cores // max(1, world_size) - 1))


def make_loader(
    dataset: Samples,
    sampler: Sampler[list[Key]],
    *,
    num_workers: int,
    device: torch.device,
    target_dtype: torch.dtype | None = None,
    prefetch_factor: int = 4,
    persistent: bool = True,
) -> DataLoader[Any]:
    """A loader over ``dataset`` yielding ``(inputs, targets, problems)`` batches.

    Pinned memory on CUDA (so copies to the device can be non-blocking), workers that
    each keep ``prefetch_factor`` batches ready and, when ``persistent``, live from one
    epoch to the next (no re-forking; stop them with :func:`close_loader`).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise UserError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=Collate(target_dtype),
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )


def close_loader(loader: DataLoader[Any]) -> None:
    """Stop a loader's persistent workers now rather than whenever it is collected."""
    iterator = getattr(loader, "_iterator", None)  # where DataLoader keeps them alive
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()
    loader._iterator = None


class ProblemReport:
    """Turns the problems a batch carries into an error or, when skipping, one warning
    per bad sample."""

    def __init__(self, policy: str) -> None:
        if policy not in BAD_ITEM_POLICIES:
            raise UserError(f"bad_items must be one of {list(BAD_ITEM_POLICIES)}, got {policy!r}")
        self.policy = policy
        self.skipped: list[str] = []

    def check(self, problems: Sequence[str]) -> None:
        if not problems:
            return
        if self.policy == "error":
            raise DataError(
                f"{problems[0]}; fix or remove the file, or set bad_items='skip' to leave "
                "unreadable samples out with a warning"
            )
        for message in problems:
            if message not in self.skipped:
                self.skipped.append(message)
                warnings.warn(f"skipped an unreadable sample: {message}", stacklevel=2)


__all__ = [
    "BAD_ITEM_POLICIES",
    "BadItem",
    "Collate",
    "EpochBatches",
    "InOrder",
    "ProblemReport",
    "SeededItems",
    "close_loader",
    "default_workers",
    "epoch_order",
    "item_seed",
    "make_loader",
]
