"""Host batches -> global jax.Arrays on the 8 simulated CPU devices (see conftest.py)."""

import jax
from jax.sharding import PartitionSpec
import numpy as np
import pytest

import input_pipeline


@pytest.fixture(name="mesh")
def fixture_mesh():
  assert jax.device_count() == 8, "conftest.py should simulate 8 CPU devices"
  return jax.make_mesh((jax.device_count(),), ("data",))


def host_batches(count, batch_size=16):
  for index in range(count):
    yield {
        "image": np.full((batch_size, 4, 4, 3), index, np.float32),
        "label": np.arange(batch_size, dtype=np.int32) + 100 * index,
        "mask": np.arange(batch_size) < batch_size - index,
    }


def test_prefetch_to_mesh_makes_sharded_global_arrays(mesh):
  batches = list(input_pipeline.prefetch_to_mesh(host_batches(3), mesh, size=2))
  assert len(batches) == 3
  for index, batch in enumerate(batches):
    assert batch["image"].shape == (16, 4, 4, 3) and batch["mask"].dtype == np.bool_
    for value in batch.values():
      assert isinstance(value, jax.Array)
      assert value.sharding.spec == PartitionSpec("data")
      assert len(value.addressable_shards) == 8
      assert all(shard.data.shape[0] == 2 for shard in value.addressable_shards)
    np.testing.assert_array_equal(np.asarray(batch["label"]), np.arange(16) + 100 * index)
    assert int(np.asarray(batch["mask"]).sum()) == 16 - index
    # Row i lives on device i // 2: the batch is split, not replicated.
    first_shard = min(batch["label"].addressable_shards, key=lambda s: s.index[0].start or 0)
    np.testing.assert_array_equal(np.asarray(first_shard.data), [100 * index, 100 * index + 1])


def test_prefetch_reads_only_a_few_batches_ahead(mesh):
  consumed = []

  def counting():
    for batch in host_batches(10):
      consumed.append(1)
      yield batch

  iterator = input_pipeline.prefetch_to_mesh(counting(), mesh, size=2)
  next(iterator)
  assert len(consumed) == 3  # the one returned plus two in flight


def test_indivisible_host_batch_names_the_config_field(mesh):
  with pytest.raises(ValueError, match="config.batch_size"):
    next(input_pipeline.prefetch_to_mesh(host_batches(1, batch_size=12), mesh))


def test_eval_pipeline_batches_reach_the_mesh(mesh):
  config = input_pipeline.default_data_config()
  config.image_size = 16
  dataset = input_pipeline.create_eval_dataset(config, 128)
  batches = list(input_pipeline.prefetch_to_mesh(dataset.as_numpy_iterator(), mesh))
  assert len(batches) == 3
  assert batches[0]["image"].shape == (128, 16, 16, 3)
  assert sum(int(np.asarray(b["mask"]).sum()) for b in batches) == 360
