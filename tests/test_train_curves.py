"""train/curves.py on event files written here with tf.summary, as the training loop writes them."""

import numpy as np
import tensorflow as tf

from tests.png_checks import assert_picture
from train import curves


def write_segment(event_dir, steps, scale, extra=None):
  """One run segment: its own writer, hence its own event file, like a (resumed) run."""
  writer = tf.summary.create_file_writer(str(event_dir))
  with writer.as_default():
    for step in steps:
      tf.summary.scalar("train/loss", scale * 2.0 / step, step=step)
      tf.summary.scalar("train/top1", min(1.0, scale * step / 10), step=step)
      tf.summary.scalar("train/learning_rate", 0.01 * 0.96 ** (step // 4), step=step)
    tf.summary.scalar("eval/top1", 0.1 * scale * steps[-1] / 10, step=steps[-1])
    tf.summary.scalar("eval_ema/top1", 0.12 * scale * steps[-1] / 10, step=steps[-1])
    if extra:
      extra()
  writer.close()


def resumed_run(workdir):
  """Steps 2..6, then a rerun resumed from a step-4 checkpoint that logs 6 and 8 again."""
  event_dir = workdir / "tensorboard"
  write_segment(
      event_dir,
      [2, 4, 6],
      scale=1.0,
      extra=lambda: tf.summary.histogram("train/logits", tf.range(10.0), step=6),
  )
  write_segment(event_dir, [6, 8], scale=0.5)
  return event_dir


def test_reader_joins_segments_and_keeps_the_latest_value_of_a_repeated_step(tmp_path):
  scalars = curves.read_scalars(str(resumed_run(tmp_path)))

  steps, loss = scalars["train/loss"]
  np.testing.assert_array_equal(steps, [2, 4, 6, 8])
  # Step 6 was written by both segments: the second (later) one counts.
  np.testing.assert_allclose(loss, [1.0, 0.5, 0.5 * 2.0 / 6, 0.5 * 2.0 / 8], rtol=1e-6)
  np.testing.assert_array_equal(scalars["eval/top1"][0], [6, 8])
  np.testing.assert_allclose(scalars["eval_ema/top1"][1], [0.072, 0.048], rtol=1e-6)
  assert "train/logits" not in scalars  # a histogram is no curve


def test_reader_keeps_the_events_before_a_truncated_record(tmp_path):
  write_segment(tmp_path, [2, 4], scale=1.0)
  (path,) = tmp_path.glob("events.out.tfevents.*")
  path.write_bytes(path.read_bytes()[:-7])  # a process killed in the middle of a write
  steps, _ = curves.read_scalars(str(tmp_path))["train/loss"]
  np.testing.assert_array_equal(steps, [2, 4])


def test_picture_of_a_resumed_run(tmp_path):
  resumed_run(tmp_path)
  path = curves.plot_training_curves(str(tmp_path))
  assert path == str(tmp_path / "curves.png")
  assert_picture(path, curves.WIDTH_PX, curves.HEIGHT_PX)
  assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["curves.png"]  # no temporary


def test_picture_without_events_and_a_failed_drawing_do_not_raise(tmp_path, caplog):
  # A run stopped before its first log line has no scalars: the panels say so.
  assert_picture(curves.plot_training_curves(str(tmp_path)), curves.WIDTH_PX, curves.HEIGHT_PX)
  (tmp_path / "curves.png").unlink()
  (tmp_path / "curves.png").mkdir()  # the picture cannot be written there
  assert curves.write_training_curves(str(tmp_path)) is None
  assert "Could not draw the training curves" in caplog.text
