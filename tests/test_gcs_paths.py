"""The path layer against a real Cloud Storage API (tests/gcs_emulator.py): checkpoints."""

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from runtime import paths
from tests.gcs_emulator import gcs_bucket  # noqa: F401  (the fixture)
from train import checkpoint


def test_a_url_stays_a_url_and_a_local_path_becomes_absolute():
  assert paths.absolute("gs://bucket/run") == "gs://bucket/run"
  assert paths.join("gs://bucket/run", "checkpoints") == "gs://bucket/run/checkpoints"
  assert paths.absolute("run").startswith("/")


def test_checkpoints_in_a_bucket_save_list_and_restore(gcs_bucket):  # noqa: F811
  workdir = f"{gcs_bucket}/checkpoints_test"
  manager = checkpoint.checkpoint_manager(workdir)
  assert str(manager.directory) == f"{workdir}/checkpoints"
  for step in (1, 2):
    manager.save(step, args=ocp.args.StandardSave({"w": jnp.full((4,), float(step))}))
  manager.wait_until_finished()
  # A step directory without orbax's commit marker is a write that never finished.
  with paths.epath.Path(f"{workdir}/checkpoints/3/default/partial").open("w") as f:
    f.write("torn")
  assert checkpoint.complete_steps(manager.directory) == [1, 2]
  restored = manager.restore(2, args=ocp.args.StandardRestore({"w": jnp.zeros((4,))}))
  np.testing.assert_array_equal(restored["w"], np.full((4,), 2.0))
  manager.close()
