"""R-CNN detection on several JAX processes: who works on which image, and how results meet.

Every process loads the same splits (loading is deterministic) and computes selective search
only for its own images, every P-th one (input_pipeline.sharding.process_indices); an all-gather
then gives every process every image's proposals, so the later phases need no shared cache.
Region records and the report are written by process 0 alone into the workdir; the workdir
must be visible to every process (a shared filesystem, as orbax's multi-process checkpoints
already require), and the other processes wait at a barrier before they read the records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math

import jax
from jax.experimental import multihost_utils
import numpy as np

from input_pipeline import sharding

# Bytes of one all-gather block: the gathered array is process_count times this on every host.
_GATHER_BLOCK_BYTES = 32 << 20


def is_leader() -> bool:
  """The process that logs results and writes files."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def local_indices(num_items: int) -> range:
  return sharding.process_indices(num_items, jax.process_index(), jax.process_count())


def compute_and_share(
    num_items: int, compute: Callable[[int], np.ndarray], columns: int, dtype=np.float32
) -> list[np.ndarray]:
  """[compute(i) for i in range(num_items)], each item computed by one process only.

  compute(i) returns an array [rows_i, columns] (rows may differ between items); every process
  receives all items as `dtype` arrays, bit-identical to the computing process's.
  """
  count, index, dtype = jax.process_count(), jax.process_index(), np.dtype(dtype)
  if count == 1:
    return [np.asarray(compute(i), dtype) for i in range(num_items)]
  mine = {i: np.asarray(compute(i), dtype) for i in local_indices(num_items)}
  slots = math.ceil(num_items / count)
  own_lengths = np.zeros(slots, np.int32)
  for slot, item in enumerate(local_indices(num_items)):
    own_lengths[slot] = mine[item].shape[0]
  lengths = np.asarray(multihost_utils.process_allgather(own_lengths))  # [P, slots]
  longest = max(1, int(lengths.max()))
  per_slot = longest * columns * dtype.itemsize
  block = max(1, _GATHER_BLOCK_BYTES // per_slot)
  items: list[np.ndarray | None] = [None] * num_items
  for first in range(0, slots, block):
    size = min(block, slots - first)
    padded = np.zeros((size, longest, columns), dtype)
    for slot in range(first, first + size):
      item = index + slot * count
      if item < num_items:
        padded[slot - first, : own_lengths[slot]] = mine[item].reshape(-1, columns)
    gathered = np.asarray(multihost_utils.process_allgather(padded))  # [P, size, longest, c]
    for process in range(count):
      for slot in range(first, first + size):
        item = process + slot * count
        if item < num_items:
          items[item] = gathered[process, slot - first, : lengths[process, slot]].copy()
  return items


def sum_over_processes(values: Sequence[int]) -> list[int]:
  """Element-wise sum of small integer counters (e.g. cache hits) over all processes."""
  if jax.process_count() == 1:
    return [int(v) for v in values]
  gathered = np.asarray(multihost_utils.process_allgather(np.asarray(values, np.int32)))
  return [int(v) for v in gathered.sum(axis=0)]
