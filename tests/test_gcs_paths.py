"""The path layer against a real Cloud Storage API (tests/gcs_emulator.py): checkpoints, models,
image folders."""

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from input_pipeline import folder
from runtime import artifacts, paths
from tests.gcs_emulator import gcs_bucket  # noqa: F401  (the fixture)
from tests.test_eval_scoring import write_digit_folder
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


def test_an_image_folder_in_a_bucket_reads_as_on_a_disk(tmp_path, gcs_bucket):  # noqa: F811
  """folder: sources list, check and read through the path layer: the same files, the same
  bytes in the same order, the same corrupt file found (its header passes, its data does not)."""
  local = tmp_path / "digits"
  write_digit_folder(local, 2)
  png = (local / "3" / "00.png").read_bytes()
  (local / "3" / "corrupt.png").write_bytes(png[:40] + b"\0" * 200 + png[-12:])
  remote = f"{gcs_bucket}/digits_folder"
  for path in sorted(local.rglob("*.png")):
    paths.upload(str(path), f"{remote}/{path.relative_to(local)}")

  on_disk = folder.ImageFolderSource(str(local), val_fraction=0.0)
  in_bucket = folder.ImageFolderSource(remote, val_fraction=0.0)
  assert in_bucket.class_names == on_disk.class_names == [str(c) for c in range(10)]
  relative = lambda files, root: [(p[len(str(root)) :], label) for p, label in files]  # noqa: E731
  assert relative(in_bucket.files("all"), remote) == relative(on_disk.files("all"), local)
  assert [s.path for s in in_bucket.skipped] == [f"{remote}/3/corrupt.png"]
  assert "decoding failed" in in_bucket.skipped[0].reason

  def elements(source):
    shard = source.shard("all", 0, 1)
    return [(e["image"], e["label"]) for e in shard.ordered().as_numpy_iterator()]

  assert elements(in_bucket) == elements(on_disk) and len(elements(on_disk)) == 20
