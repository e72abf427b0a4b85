"""Metrics out: TensorBoard event files plus a human log line, written by process 0 only."""
from __future__ import annotations

import datetime
import importlib.util
import os
import sys
from typing import Mapping

import jax
from absl import logging


class _DropOrbaxInfo(logging.logging.Filter):

  def filter(self, record):
    return record.levelno > logging.logging.INFO or "/orbax/" not in record.pathname


def quiet_orbax_info_logs() -> None:
  """orbax logs a dozen INFO lines per checkpoint; keep its warnings, drop the chatter."""
  logging.get_absl_handler().addFilter(_DropOrbaxInfo())


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


def format_eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


def log_train_line(step: int, total_steps: int, epoch: float, metrics: Mapping[str, float],
                   images_per_sec: float | None, seconds_per_step: float | None) -> None:
  """One progress line; rate and ETA are None when no step after compilation has been timed."""
  if seconds_per_step is None:
    speed = "rate after the next steps (the first one compiled)"
  else:
    speed = f"{images_per_sec:.1f} img/s ETA {format_eta((total_steps - step) * seconds_per_step)}"
  logging.info(
      "step %d/%d epoch %.2f | loss %.4f top1 %.3f top5 %.3f lr %.5f grad_norm %.3f | %s",
      step, total_steps, epoch, metrics["loss"], metrics["top1"], metrics["top5"],
      metrics["learning_rate"], metrics["grad_norm"], speed)


def someone_is_watching() -> bool:
  """A terminal on stderr, or a Jupyter/Colab kernel: where a progress bar helps a person.

  Batch jobs, CI and redirected logs get the plain log lines only.
  """
  if os.environ.get("GOOGLENET_PROGRESS_BARS") in ("0", "1"):  # forced off or on
    return os.environ["GOOGLENET_PROGRESS_BARS"] == "1"
  if "ipykernel" in sys.modules:
    return True
  return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _NoBar:

  def update(self, n: int = 1) -> None:
    del n

  def set_postfix_str(self, text: str) -> None:
    del text

  def close(self) -> None:
    pass


def progress_bar(total: int | None, description: str, initial: int = 0, unit: str = "step"):
  """A tqdm bar on process 0 where someone is watching, else an object that does nothing.

  In a notebook the bar is a widget when ipywidgets is installed and text otherwise (tqdm's
  notebook bar needs the widget).
  """
  if jax.process_index() != 0 or not someone_is_watching():
    return _NoBar()
  try:
    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets"):
      from tqdm.notebook import tqdm  # pylint: disable=g-import-not-at-top
    else:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:  # tqdm is a requirement, but a bar is never worth failing a run over
    return _NoBar()
  return tqdm(total=total, initial=initial, desc=description, unit=unit, dynamic_ncols=True,
              leave=True)
