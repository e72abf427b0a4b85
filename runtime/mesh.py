"""The device mesh of every binary: all devices on one 'data' axis, batches split along it."""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_data_mesh() -> Mesh:
  """All devices on one 'data' axis. Auto axis types: sharding is propagated by XLA (GSPMD)
  from the batch's placement; JAX 0.10's default of Explicit axes would put shardings into
  array types and reject Flax layers (dropout) that mix replicated and sharded operands."""
  return jax.make_mesh(
      (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
  )


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over 'data'; the other dimensions whole on each device."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """The whole array on every device of the mesh (parameters, metrics)."""
  return NamedSharding(mesh, PartitionSpec())
