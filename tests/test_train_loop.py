"""End to end on the embedded digits config: train, checkpoint, resume, evaluate."""

import json
import os
import re
import signal
import threading

import jax
import numpy as np
import pytest

from configs import digits
from runtime import artifacts
from tests.png_checks import assert_picture
from train import checkpoint, curves, train_and_evaluate


def tiny_config(steps):
  config = digits.get_config()
  config.model.width = 0.125
  config.batch_size = 16
  config.eval_batch_size = 120
  config.num_train_steps = steps
  config.log_every_steps = 2
  config.checkpoint_every_steps = 3
  config.eval_every_steps = -1
  return config


def final_params(workdir):
  variables, _ = artifacts.load_model_variables(workdir)
  ema, _ = artifacts.load_model_variables(workdir, use_ema=True)
  return variables, ema


def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch, capsys):
  straight = train_and_evaluate(tiny_config(6), str(tmp_path / "straight"))
  assert straight["step"] == 6 and 0.0 <= straight["eval_top1"] <= 1.0
  assert {"eval_ema_top1", "eval_top5", "wall_seconds", "checkpoint"} <= set(straight)

  interrupted = str(tmp_path / "interrupted")
  first = train_and_evaluate(tiny_config(4), interrupted)
  assert first["step"] == 4
  # A SIGKILL in the middle of a save leaves orbax's temporary directory behind; resuming
  # must ignore it and continue from the last complete checkpoint.
  partial = tmp_path / "interrupted" / "checkpoints" / "5.orbax-checkpoint-tmp-1795304352"
  partial.mkdir()
  (partial / "half_written").write_bytes(b"\0" * 10)
  assert checkpoint.checkpoint_manager(interrupted).latest_step() == 4
  monkeypatch.setenv("GOOGLENET_PROGRESS_BARS", "1")  # as if a person watched a terminal
  capsys.readouterr()
  resumed = train_and_evaluate(tiny_config(6), interrupted)
  assert resumed["step"] == 6
  # The bar starts at the resumed step and ends at the last one.
  bar = capsys.readouterr().err
  assert re.search(r"training: +67%.*\| 4/6", bar) and re.search(r"training: 100%.*\| 6/6", bar)

  (params_a, ema_a), (params_b, ema_b) = final_params(tmp_path / "straight"), final_params(
      interrupted
  )
  for a, b in zip(jax.tree.leaves((params_a, ema_a)), jax.tree.leaves((params_b, ema_b))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert resumed["eval_top1"] == pytest.approx(straight["eval_top1"])
  with open(tmp_path / "straight" / "summary.json") as f:
    assert json.load(f)["step"] == 6
  assert os.listdir(tmp_path / "straight" / "tensorboard")
  # curves.png of the resumed run covers both segments (train logs every 2 steps, an
  # evaluation at the end of each segment), read back from its event files.
  scalars = curves.read_scalars(os.path.join(interrupted, "tensorboard"))
  np.testing.assert_array_equal(scalars["train/loss"][0], [2, 4, 6])
  np.testing.assert_array_equal(scalars["eval/top1"][0], [4, 6])
  np.testing.assert_array_equal(scalars["eval_ema/top1"][0], [4, 6])
  assert scalars["eval/top1"][1][-1] == pytest.approx(resumed["eval_top1"])
  assert_picture(os.path.join(interrupted, "curves.png"), curves.WIDTH_PX, curves.HEIGHT_PX)
  # The workdir records the model config, so evaluation can rebuild the model.
  with open(tmp_path / "straight" / artifacts.MODEL_CONFIG_FILE) as f:
    assert json.load(f)["width"] == 0.125
  # ... and the input convention, so evaluation refuses another normalisation.
  artifacts.check_normalization(str(tmp_path / "straight"), tiny_config(6).data.normalization)
  with pytest.raises(ValueError, match="--config.data.normalization="):
    artifacts.check_normalization(str(tmp_path / "straight"), "caffe")


def test_sigterm_saves_and_stops(tmp_path):
  config = tiny_config(100_000)
  timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
  timer.start()
  try:
    summary = train_and_evaluate(config, str(tmp_path))
  finally:
    timer.cancel()
  assert summary["stopped_by"] == "SIGTERM"
  # The signal may land during compilation (step 0) or in the loop; either way it is saved.
  assert 0 <= summary["step"] < 100_000
  manager = checkpoint.checkpoint_manager(str(tmp_path))
  assert manager.latest_step() == summary["step"]
  # A stopped run draws its curves too (panels say 'no data yet' if it stopped before a log).
  assert_picture(tmp_path / "curves.png", curves.WIDTH_PX, curves.HEIGHT_PX)


def test_class_count_mismatch_is_explained(tmp_path):
  config = tiny_config(2)
  config.model.num_classes = 1000
  with pytest.raises(ValueError, match="num_classes=10"):
    train_and_evaluate(config, str(tmp_path))
