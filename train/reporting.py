"""Metrics out: TensorBoard event files plus a human log line, written by process 0 only."""

from __future__ import annotations

from collections.abc import Mapping
import os
import tempfile

from absl import logging
import jax

from runtime import paths
from runtime.progress import format_eta
from train import curves


class MetricWriter:
  """Scalars to `<workdir>/tensorboard` (train and eval curves) on process 0.

  A workdir in a bucket gets its events through a local mirror: TensorFlow's writer reaches
  a bucket only through TensorFlow's own `gs://` client, which cannot be pointed at another
  endpoint (an emulator, a proxy) and is not the client runtime/paths.py may have chosen. The
  mirror starts with the bucket's event files (a resumed run appends to its history) and each
  flush copies the files that grew back up.
  """

  def __init__(self, workdir: str):
    self._writer = None
    self._bucket_dir = None
    if jax.process_index() == 0:
      import tensorflow as tf  # only the writer needs TF here; the input pipeline has it anyway

      self._tf = tf
      event_dir = paths.join(workdir, "tensorboard")
      if paths.is_remote(event_dir):
        self._bucket_dir, self._mirror = event_dir, tempfile.TemporaryDirectory(prefix="events_")
        names = paths.download_files(event_dir, curves.EVENT_FILES, self._mirror.name)
        self._uploaded = {n: os.path.getsize(os.path.join(self._mirror.name, n)) for n in names}
        event_dir = self._mirror.name
      self._writer = tf.summary.create_file_writer(event_dir)

  def _upload_grown_files(self) -> None:
    for name in sorted(os.listdir(self._mirror.name)):
      size = os.path.getsize(os.path.join(self._mirror.name, name))
      if size != self._uploaded.get(name):
        paths.upload(os.path.join(self._mirror.name, name), paths.join(self._bucket_dir, name))
        self._uploaded[name] = size

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    with self._writer.as_default():
      for name, value in scalars.items():
        self._tf.summary.scalar(name, value, step=step)
    self._writer.flush()
    if self._bucket_dir:
      self._upload_grown_files()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      if self._bucket_dir:
        self._upload_grown_files()
        self._mirror.cleanup()


def log_train_line(
    step: int,
    total_steps: int,
    epoch: float,
    metrics: Mapping[str, float],
    images_per_sec: float | None,
    seconds_per_step: float | None,
    headline: tuple[str, ...] = ("top1", "top5"),
) -> None:
  """One progress line; rate and ETA are None when no step after compilation has been timed."""
  if seconds_per_step is None:
    speed = "rate after the next steps (the first one compiled)"
  else:
    speed = f"{images_per_sec:.1f} img/s ETA {format_eta((total_steps - step) * seconds_per_step)}"
  logging.info(
      "step %d/%d epoch %.2f | %s lr %.5f grad_norm %.3f | %s",
      step,
      total_steps,
      epoch,
      headline_text(metrics, headline),
      metrics["learning_rate"],
      metrics["grad_norm"],
      speed,
  )


def headline_text(metrics: Mapping[str, float], headline: tuple[str, ...]) -> str:
  """'loss 0.1234 top1 0.950': the loss and the task's headline metrics that are present."""
  shown = ["loss", *(name for name in headline if name in metrics)]
  return " ".join(f"{name} {metrics[name]:.4f}" for name in shown)
