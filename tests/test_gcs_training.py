"""A training workdir in a bucket (tests/gcs_emulator.py): lock, SIGTERM, bit-exact resume."""

import json
import os
import signal
import tempfile
import threading
import time

from absl import flags
import jax
import numpy as np
from PIL import Image
import pytest

from eval import classify
from runtime import paths
from tests.gcs_emulator import gcs_bucket  # noqa: F401  (the fixture)
from tests.local_cluster import REPO_ROOT
from tests.png_checks import assert_picture
from tests.test_train_loop import final_params, tiny_config
from train import checkpoint, curves, reporting, train_and_evaluate, workdir_lock


def sigterm_at_the_log_of(step, monkeypatch):
  """SIGTERM to this process when the training loop logs `step` (as a scheduler would send
  it mid-run; a timer could fire after a tiny run's last step)."""
  write_scalars = reporting.MetricWriter.write_scalars

  def write_and_signal(self, logged_step, scalars):
    write_scalars(self, logged_step, scalars)
    if logged_step == step:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(reporting.MetricWriter, "write_scalars", write_and_signal)


def test_sigterm_and_resume_in_a_bucket_equal_an_uninterrupted_local_run(
    tmp_path,
    monkeypatch,
    gcs_bucket,  # noqa: F811
):
  straight = train_and_evaluate(tiny_config(6), str(tmp_path / "straight"))

  workdir = f"{gcs_bucket}/digits"
  with monkeypatch.context() as patch:
    sigterm_at_the_log_of(2, patch)
    stopped = train_and_evaluate(tiny_config(6), workdir)
  assert stopped["stopped_by"] == "SIGTERM" and 2 <= stopped["step"] < 6, stopped
  assert checkpoint.complete_steps(checkpoint.checkpoint_directory(workdir))[-1] == stopped["step"]
  assert not paths.exists(f"{workdir}/{workdir_lock.LOCK_FILE}")
  resumed = train_and_evaluate(tiny_config(6), workdir)
  assert resumed["step"] == 6 and not resumed["stopped_by"]

  (params_a, ema_a), (params_b, ema_b) = final_params(tmp_path / "straight"), final_params(workdir)
  for a, b in zip(jax.tree.leaves((params_a, ema_a)), jax.tree.leaves((params_b, ema_b))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert resumed["eval_top1"] == pytest.approx(straight["eval_top1"])
  # Everything a local workdir holds is in the bucket: the summary, both segments' events
  # (the train loss logged every 2 steps), the curves drawn from them, the model's files.
  assert json.loads(paths.read_text(f"{workdir}/summary.json"))["step"] == 6
  scalars = curves.read_scalars(f"{workdir}/tensorboard")
  assert {2, 6} <= set(scalars["train/loss"][0].tolist())
  with tempfile.TemporaryDirectory() as local:
    paths.download(f"{workdir}/curves.png", os.path.join(local, "curves.png"))
    assert_picture(os.path.join(local, "curves.png"), curves.WIDTH_PX, curves.HEIGHT_PX)
  assert paths.exists(f"{workdir}/model.json") and paths.exists(f"{workdir}/input.json")

  # eval.classify reads that model from the bucket and writes its table and picture there.
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(
        [
            "classify",
            f"--models={workdir}",
            f"--config={os.path.join(REPO_ROOT, 'configs', 'digits.py')}",
            "--crops=1",
            "--split=test[:40]",
            "--params=raw",
            f"--output={gcs_bucket}/tables/table3.json",
        ]
    )
    classify.main(["classify"])
  finally:
    flags.FLAGS.unparse_flags()
  table = json.loads(paths.read_text(f"{gcs_bucket}/tables/table3.json"))
  assert table["num_images"] == 40 and [m["name"] for m in table["models"]] == [workdir]
  with tempfile.TemporaryDirectory() as local:
    paths.download(f"{gcs_bucket}/tables/table3.png", os.path.join(local, "table3.png"))
    assert_picture(
        os.path.join(local, "table3.png"), *Image.open(os.path.join(local, "table3.png")).size
    )


def test_a_second_run_on_a_bucket_workdir_is_refused(gcs_bucket):  # noqa: F811
  workdir = f"{gcs_bucket}/held"
  with workdir_lock.WorkdirLock(workdir):
    with pytest.raises(workdir_lock.WorkdirBusyError, match=f"{workdir} is in use by another run"):
      workdir_lock.WorkdirLock(workdir).acquire()
  assert not paths.exists(f"{workdir}/{workdir_lock.LOCK_FILE}")  # released

  # Two starters at once (no lock yet): exactly one holds the workdir.
  raced = f"{gcs_bucket}/raced"
  starters = [workdir_lock.WorkdirLock(raced) for _ in range(2)]
  outcomes = []

  def start(lock):
    try:
      lock.acquire()
      outcomes.append("held")
    except workdir_lock.WorkdirBusyError:
      outcomes.append("refused")

  threads = [threading.Thread(target=start, args=(lock,)) for lock in starters]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert sorted(outcomes) == ["held", "refused"]
  for lock in starters:
    lock.release()

  # A lock whose heartbeat stopped long ago (its machine went away) is taken over.
  silent = time.time() - workdir_lock.STALE_AFTER_SECONDS - 60
  paths.write_text(
      f"{workdir}/{workdir_lock.LOCK_FILE}",
      json.dumps({"host": "elsewhere", "pid": 1, "started": "earlier", "refreshed": silent}),
  )
  with workdir_lock.WorkdirLock(workdir):
    holder = json.loads(paths.read_text(f"{workdir}/{workdir_lock.LOCK_FILE}"))
    assert holder["pid"] == os.getpid()


def test_a_missing_bucket_stops_the_run_before_anything_compiles(
    monkeypatch,
    gcs_bucket,  # noqa: F811  (the emulator, which has only this bucket)
):
  from train import loop

  def the_run_itself(*unused_args):
    raise AssertionError("the run started without a usable workdir")

  monkeypatch.setattr(loop, "_train_and_evaluate", the_run_itself)
  with pytest.raises(workdir_lock.WorkdirUnusableError, match="gs://no-such-bucket-here/run"):
    train_and_evaluate(tiny_config(2), "gs://no-such-bucket-here/run")
