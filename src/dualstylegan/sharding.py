"""Sharing a folder run between the processes of a ``torchrun`` job (any ``--nproc-per-node`` and ``--nnodes``).

The file list is split by rank alone — ``RANK`` and ``WORLD_SIZE`` from the environment torchrun sets — so no
process group is needed to decide who does what: every rank lists the same inputs in the same order and takes every
``world_size``-th file from its own rank on. Ranks meet once, at the end, so that rank 0 can print the summary:
through a Gloo barrier when torchrun's rendezvous variables are set, otherwise not at all.
Nothing here imports torch at import time.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from .errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This process's place in the job: ``rank`` of ``world_size``, and ``local_rank`` on its machine (its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every ``world_size``-th from index ``rank`` (deterministic; balanced to within one)."""
        return list(items[self.rank::self.world_size])


def _int_env(name: str, default: int, env) -> int:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"the environment variable {name}={value!r} is not a whole number; it is set by torchrun"
                         ) from None


def shard_from_env(env=None) -> Shard:
    """The :class:`Shard` torchrun describes in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (one process without)."""
    env = os.environ if env is None else env
    world = _int_env("WORLD_SIZE", 1, env)
    rank = _int_env("RANK", 0, env)
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of a job; run under torchrun")
    return Shard(rank, world, _int_env("LOCAL_RANK", 0, env))


def barrier_and_gather(shard: Shard, value, env=None) -> list | None:
    """Wait for every rank and return all ranks' ``value`` on rank 0 (None elsewhere), through a Gloo process group
    made for this and destroyed after; with one process, ``[value]``. Needs torchrun's ``MASTER_ADDR`` /
    ``MASTER_PORT``; without them each rank returns ``[value]`` alone (its own summary)."""
    env = os.environ if env is None else env
    if not shard.distributed or not env.get("MASTER_ADDR"):
        return [value]
    import datetime

    import torch.distributed as dist

    own = not dist.is_initialized()
    if own:
        dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world_size,
                                timeout=datetime.timedelta(hours=24))  # ranks wait for the slowest shard
    try:
        out = [None] * shard.world_size if shard.leader else None
        dist.gather_object(value, out, dst=0)
        return out
    finally:
        if own:
            dist.destroy_process_group()


__all__ = ["Shard", "barrier_and_gather", "shard_from_env"]
