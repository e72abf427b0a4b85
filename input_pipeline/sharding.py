"""How examples and batches are divided between JAX processes (hosts).

Each process reads only its own contiguous slice of a split and builds a per-host batch of
global_batch / process_count examples; `jax.make_array_from_process_local_data` then stitches the
host batches into one global array. For evaluation every process must run the same number of
steps (the sharded step is a collective), so shards are padded to equal numbers of batches and
the padding carries mask False.
"""

import math

import jax
import tensorflow as tf

from input_pipeline.traced import as_written


def resolve_process(
    process_index: int | None = None, process_count: int | None = None
) -> tuple[int, int]:
  """Explicit values (tests simulate several hosts with them) or JAX's own."""
  if process_count is None:
    process_count = jax.process_count()
  if process_index is None:
    process_index = jax.process_index()
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, {process_count})")
  return process_index, process_count


def process_indices(num_examples: int, process_index: int, process_count: int) -> range:
  """Indices of this process's examples in a list held by every process: every k-th one.

  Striding rather than contiguous blocks keeps each host's shard class-balanced when the list
  is sorted by class (image folders). Shard sizes differ by at most one, at most
  ceil(num_examples / process_count), as with `tfds.even_splits` for TFDS sources.
  """
  return range(process_index, num_examples, process_count)


def strided_index(process_index: int, process_count: int):
  """`Shard.global_index` of a `process_indices` shard: its k-th example is the split's
  (process_index + k * process_count)-th."""
  return lambda position: process_index + position * process_count


def per_host_batch_size(
    global_batch_size: int, process_count: int | None = None, device_count: int | None = None
) -> int:
  """global_batch_size / process_count, or a ValueError that says how to fix the config.

  `device_count` (the size of the mesh's 'data' axis) is checked too when given: the sharded
  step splits the global batch evenly over the devices.
  """
  if process_count is None:
    process_count = jax.process_count()
  if global_batch_size < 1:
    raise ValueError(
        f"config.batch_size={global_batch_size}: the global batch size must be " "positive."
    )
  for divisor, what in (
      (process_count, "the number of processes (jax.process_count())"),
      (device_count, "the number of devices on the mesh's 'data' axis"),
  ):
    if divisor and global_batch_size % divisor:
      fix = math.ceil(global_batch_size / divisor) * divisor
      raise ValueError(
          f"config.batch_size={global_batch_size} (the global batch size) is not divisible by "
          f"{what}, {divisor}; set --config.batch_size to a multiple of {divisor}, "
          f"e.g. {fix}."
      )
  return global_batch_size // process_count


def eval_batches_per_process(num_examples: int, host_batch_size: int, process_count: int) -> int:
  """Batches every process yields so that the largest shard fits; all processes agree.

  Computed from the split size alone, so hosts need no communication to agree on it.
  """
  largest_shard = math.ceil(num_examples / process_count)
  return math.ceil(largest_shard / host_batch_size)


def pad_with_mask(examples: tf.data.Dataset, padding_example: dict, total: int) -> tf.data.Dataset:
  """Adds mask True to each example and appends mask-False padding up to `total` examples.

  `padding_example` has the structure of one (unbatched) example without the mask. Padding is
  an endless repeat cut by `take`, so the shard's own size need not be known.
  """
  real = examples.map(as_written(lambda example: {**example, "mask": tf.constant(True)}))
  padding = {name: tf.zeros_like(value) for name, value in padding_example.items()}
  padding = tf.data.Dataset.from_tensors({**padding, "mask": tf.constant(False)}).repeat()
  return real.concatenate(padding).take(total)
