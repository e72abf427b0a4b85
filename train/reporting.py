"""Metrics out: TensorBoard event files plus a human log line, written by process 0 only."""

from __future__ import annotations

from collections.abc import Mapping
import os

from absl import logging
import jax

from runtime.progress import format_eta


class MetricWriter:
  """Scalars to `<workdir>/tensorboard` (train and eval curves) on process 0."""

  def __init__(self, workdir: str):
    self._writer = None
    if jax.process_index() == 0:
      import tensorflow as tf  # only the writer needs TF here; the input pipeline has it anyway

      self._tf = tf
      self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    with self._writer.as_default():
      for name, value in scalars.items():
        self._tf.summary.scalar(name, value, step=step)
    self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


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
