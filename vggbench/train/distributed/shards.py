"""Disjoint shards per worker and step: every image once per epoch, step k of N workers = step k of one process.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from vggbench.errors import VggbenchError
from vggbench.train.distributed.kvstore import DistInfo, trainer_options

# --- shards ----------------------------------------------------------------------------------------

def epoch_order(n_images: int, epoch_seed: int) -> np.ndarray:
    """The epoch's permutation of ``0..n_images-1``: the order the single-process shuffled loader
    (``vggbench.data.data_loader``, Gluon's ``RandomSampler`` after ``np.random.seed``) draws
    with ``epoch_seed``, so step ``k`` of any number of workers sees that loader's batch ``k``."""
    return np.random.RandomState(epoch_seed).permutation(int(n_images))


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One epoch's split of ``n_images`` over ``num_workers`` in steps of ``global_batch``.

    ``order``: the epoch permutation; ``step_images``: images in each global step (all
    ``global_batch`` except possibly the last); ``local_images``: per worker, images in each step.
    """

    n_images: int
    num_workers: int
    global_batch: int
    order: np.ndarray
    step_images: Tuple[int, ...]
    local_images: Tuple[Tuple[int, ...], ...]

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch, the same on every worker."""
        return len(self.step_images)

    def indices(self, rank: int) -> np.ndarray:
        """Worker ``rank``'s image indices in the order it trains on them (step by step)."""
        if not 0 <= rank < self.num_workers:
            raise ValueError(f"rank {rank} outside 0..{self.num_workers - 1}")
        parts = []
        for step, total in enumerate(self.step_images):
            start = step * self.global_batch
            counts = [self.local_images[r][step] for r in range(self.num_workers)]
            offset = start + sum(counts[:rank])
            parts.append(self.order[offset:offset + counts[rank]])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.order.dtype)


def per_worker_batch(global_batch: int, num_workers: int) -> int:
    """Images each worker takes per step: ``global_batch / num_workers``, which must be whole."""
    if global_batch < 1 or num_workers < 1:
        raise VggbenchError(f"--batch-size ({global_batch}) and the number of workers ({num_workers}) must be >= 1")
    if global_batch % num_workers:
        raise VggbenchError(f"--batch-size {global_batch} is the global batch and must split evenly over "
                            f"{num_workers} workers; use a multiple of {num_workers}")
    return global_batch // num_workers


def plan_shards(n_images: int, num_workers: int, global_batch: int, epoch_seed: int) -> ShardPlan:
    """The epoch's :class:`ShardPlan` (the rules are in this module's docstring).

    ``n_images``: training images (>= ``num_workers``, so every worker trains on something);
    ``num_workers``; ``global_batch``: images per optimizer step, a multiple of ``num_workers``;
    ``epoch_seed``: the epoch's shuffle seed (``train.epoch_seed``).
    """
    local = per_worker_batch(global_batch, num_workers)
    if n_images < num_workers:
        raise VggbenchError(f"{n_images} training images cannot be shared by {num_workers} workers; "
                            f"raise --train-limit to at least {num_workers}")
    full_steps, remainder = divmod(int(n_images), global_batch)
    step_images = [global_batch] * full_steps
    per_rank = [[local] * full_steps for _ in range(num_workers)]
    if remainder:
        step_images.append(remainder)
        for rank, count in enumerate(np.array_split(np.arange(remainder), num_workers)):
            per_rank[rank].append(len(count))
    return ShardPlan(n_images=int(n_images), num_workers=num_workers, global_batch=global_batch,
                     order=epoch_order(n_images, epoch_seed), step_images=tuple(step_images),
                     local_images=tuple(tuple(counts) for counts in per_rank))


def shard_indices(n_images: int, rank: int, num_workers: int, epoch_seed: int, global_batch: int) -> np.ndarray:
    """Worker ``rank``'s training-image indices for the epoch seeded ``epoch_seed``, in training
    order (see :func:`plan_shards` for the other parameters). The shards of ranks
    ``0..num_workers-1`` are disjoint and together hold every index once."""
    return plan_shards(n_images, num_workers, global_batch, epoch_seed).indices(rank)


def distributed_recipe_fields(info: DistInfo, contexts: Sequence, global_batch: int) -> Dict[str, Any]:
    """The manifest's record of how a run was spread: ``kvstore``, ``num_workers``, ``rank`` (of
    the writer), ``contexts`` (each worker's devices), ``global_batch`` (``--batch-size``),
    ``per_worker_batch``, ``per_device_batch`` (largest share of one device), and the batch/lr
    and shard rules in words."""
    local = per_worker_batch(global_batch, info.num_workers)
    return {
        "kvstore": info.kvstore,
        "num_workers": info.num_workers,
        "num_servers": info.num_servers,
        "rank": info.rank,
        "contexts": [str(c) for c in contexts],
        "global_batch": global_batch,
        "per_worker_batch": local,
        "per_device_batch": math.ceil(local / max(1, len(contexts))),
        "batch_semantics": "batch_size is the global batch per optimizer step, split over workers and their "
                           "devices; lr is not rescaled; the summed gradient is divided by the step's images",
        "sharding": "one shared permutation per epoch (the single-process order); step k's global batch is split "
                    "into equal consecutive chunks by rank; every image once per epoch; a smaller last step",
        "update_on_kvstore": trainer_options(info.kvstore)["update_on_kvstore"],
        "train_metrics": "rank 0's shard" if info.distributed and info.num_workers > 1 else "all images",
    }
