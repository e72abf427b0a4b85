"""The path layer against a real Cloud Storage API (tests/gcs_emulator.py): checkpoints."""

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from runtime import artifacts, paths
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


def test_exported_models_and_workdirs_in_a_bucket_load(gcs_bucket):  # noqa: F811
  """What eval.classify --models reads: model.json, input.json, variables or checkpoints."""
  variables = {"params": {"dense": {"kernel": np.arange(6.0).reshape(2, 3)}}, "batch_stats": {}}
  exported = f"{gcs_bucket}/exported"
  artifacts.save_model_variables(exported, variables, {"variant": "paper", "width": 0.125})
  artifacts.write_input_convention(exported, "caffe_bgr")
  loaded, model_config = artifacts.load_model_variables(exported)
  np.testing.assert_array_equal(loaded["params"]["dense"]["kernel"], np.arange(6.0).reshape(2, 3))
  assert model_config == {"variant": "paper", "width": 0.125}
  assert artifacts.read_input_convention(exported) == {"normalization": "caffe_bgr"}

  workdir = f"{gcs_bucket}/workdir"
  state = {"params": {"w": jnp.ones(3)}, "ema_params": {"w": jnp.full(3, 0.5)}, "batch_stats": {}}
  manager = checkpoint.checkpoint_manager(workdir)
  manager.save(7, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  manager.close()
  artifacts.write_model_config(workdir, {"variant": "bn"})
  ema, model_config = artifacts.load_model_variables(workdir, use_ema=True)
  np.testing.assert_array_equal(ema["params"]["w"], np.full(3, 0.5))
  assert model_config == {"variant": "bn"}
  assert artifacts.read_input_convention(workdir) is None
