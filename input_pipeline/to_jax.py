"""Host batches (dicts of numpy arrays) -> global jax.Arrays sharded over the mesh's 'data' axis.

Each process holds B_host rows; `jax.make_array_from_process_local_data` makes them one
global array of process_count * B_host rows, split along the batch dimension over the
devices of the 'data' axis. Transfers are asynchronous, so keeping `size` batches in flight
(flax's prefetch_to_device pattern) overlaps the copy of batch k+1 with the step on batch k;
tf.data's own prefetch already overlaps the host-side work.
"""

import collections
from collections.abc import Iterable, Iterator
import itertools
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
import numpy as np

from runtime.mesh import batch_sharding


def host_batch_to_global(batch: dict[str, Any], sharding: NamedSharding) -> dict[str, jax.Array]:
  """One host batch -> dict of global arrays (rows of all processes together)."""
  local_devices = len(sharding.addressable_devices)

  def to_global(name, value):
    value = np.asarray(value)
    if value.shape[0] % local_devices:
      raise ValueError(
          f"host batch {name!r} has {value.shape[0]} rows, not divisible by this process's "
          f"{local_devices} devices on the 'data' axis; set --config.batch_size to a multiple "
          f"of jax.device_count() = {jax.device_count()}."
      )
    return jax.make_array_from_process_local_data(sharding, value)

  return {name: to_global(name, value) for name, value in batch.items()}


def prefetch_to_mesh(
    iterator: Iterable[dict[str, Any]], mesh: Mesh, size: int = 2
) -> Iterator[dict[str, jax.Array]]:
  """Yields global sharded batches, keeping `size` of them already on their way to devices.

  `iterator` yields dicts of numpy arrays (e.g. `dataset.as_numpy_iterator()`); TensorFlow
  tensors are accepted too and converted with np.asarray.
  """
  if size < 1:
    raise ValueError(f"prefetch size must be at least 1, got {size}")
  sharding = batch_sharding(mesh)
  iterator = iter(iterator)
  in_flight = collections.deque()

  def enqueue(count):
    for batch in itertools.islice(iterator, count):
      in_flight.append(host_batch_to_global(batch, sharding))

  enqueue(size)
  while in_flight:
    batch = in_flight.popleft()
    enqueue(1)
    yield batch
