"""Training curves as a picture, read back from a run's TensorBoard event files.

    from train.curves import plot_training_curves
    plot_training_curves("/tmp/googlenet_digits")  # -> "/tmp/googlenet_digits/curves.png"

The training loop calls it at the end of every run, finished or stopped by a signal
(process 0 only). Reading the event files rather than the loop's own memory makes the picture
of a resumed run cover all its segments: each segment appends a new event file to
<workdir>/tensorboard, and where two segments wrote the same step (a run resumed from a
checkpoint older than its last log line) the value written last counts.

The picture: 1000 x 750 pixels, four panels: training loss; training top-1 and top-5 (means
over each logging interval); learning rate; evaluation top-1 of the raw parameters against
the Polyak-averaged (EMA) ones. A MultiBox run (config.task='multibox') shows its location and
confidence loss terms and its box recall (against its priors') instead of the accuracies.
"""

from __future__ import annotations

import glob
import os
import tempfile

from absl import logging
import numpy as np

from runtime import figures, paths

WIDTH_PX, HEIGHT_PX = 1000, 750
FILE_NAME = "curves.png"
# TensorFlow's summary writer's file names (train/reporting.py writes them).
EVENT_FILES = "events.out.tfevents.*"
_MARK_POINTS_UP_TO = 30

# (title, y label, scale, [(tag, legend label, line style, marker)]): the tags the loop writes.
_PANELS = (
    ("Training loss", "cross-entropy", 1.0, [("train/loss", "loss", "-", "")]),
    (
        "Training accuracy",
        "%",
        100.0,
        [("train/top1", "top-1", "-", ""), ("train/top5", "top-5", "--", "")],
    ),
    ("Learning rate", "learning rate", 1.0, [("train/learning_rate", "learning rate", "-", "")]),
    # Markers: a run evaluates rarely (often only at its end), and a single point needs one.
    (
        "Evaluation top-1",
        "%",
        100.0,
        [
            ("eval/top1", "raw parameters", "-", "o"),
            ("eval_ema/top1", "Polyak (EMA) parameters", "-", "s"),
        ],
    ),
)

# config.task='multibox' (train/tasks.py) writes loss terms and box recall instead of accuracy.
_MULTIBOX_PANELS = (
    ("Training loss", "alpha x location + confidence", 1.0, [("train/loss", "loss", "-", "")]),
    (
        "Training loss terms",
        "loss",
        1.0,
        [
            ("train/location_loss", "location", "-", ""),
            ("train/confidence_loss", "confidence", "--", ""),
        ],
    ),
    _PANELS[2],
    (
        "Evaluation box recall (IoU >= 0.5)",
        "%",
        100.0,
        [
            ("eval/recall", "raw parameters", "-", "o"),
            ("eval_ema/recall", "Polyak (EMA) parameters", "-", "s"),
            ("eval/prior_recall", "the priors themselves", ":", "^"),
        ],
    ),
)


# Panels whose series differ by orders of magnitude (MultiBox's location term is ~1/500 of
# its confidence term): a log axis shows both.
_LOG_SCALE_TITLES = ("Training loss terms",)
# Recall drawn on 0-100%, so the raw, EMA and prior points of a run evaluated once stay apart
# from the legend instead of filling the axis.
_FULL_RANGE_TITLES = ("Evaluation box recall (IoU >= 0.5)",)


def _panels_for(curves: dict) -> tuple:
  """The multibox panels when the run wrote its loss terms and no accuracy, else the default."""
  if "train/location_loss" in curves and "train/top1" not in curves:
    return _MULTIBOX_PANELS
  return _PANELS


def read_scalars(event_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{tag: (steps, values)} of every scalar in the event files of `event_dir`, by step.

  Where several events hold the same tag and step, the one with the latest wall time wins
  (file order breaks ties), so a resumed run's repeated steps show its last segment. Event
  files in a bucket are copied to a temporary directory first (TensorFlow's reader, like its
  writer, reaches buckets only through its own client; train/reporting.py).
  """
  if paths.is_remote(event_dir):
    with tempfile.TemporaryDirectory(prefix="events_") as local:
      paths.download_files(event_dir, EVENT_FILES, local)
      return read_scalars(local)
  import tensorflow as tf  # only the reader needs TF
  from tensorflow.core.util import event_pb2

  latest: dict[tuple[str, int], tuple[float, int, float]] = {}
  order = 0
  for path in sorted(glob.glob(os.path.join(event_dir, EVENT_FILES))):
    try:
      for record in tf.data.TFRecordDataset(path):
        event = event_pb2.Event.FromString(record.numpy())
        for value in event.summary.value:
          scalar = _scalar_of(value, tf)
          if scalar is None:
            continue
          order += 1
          key = (value.tag, int(event.step))
          if key not in latest or (event.wall_time, order) >= latest[key][:2]:
            latest[key] = (event.wall_time, order, scalar)
    except tf.errors.DataLossError as error:
      # A process killed while writing leaves a truncated last record: keep what came before.
      logging.warning(
          "Event file %s ends in a damaged record (%s); using the events before it.", path, error
      )
  curves: dict[str, tuple[list[int], list[float]]] = {}
  for (tag, step), (_, _, scalar) in sorted(latest.items()):
    steps, values = curves.setdefault(tag, ([], []))
    steps.append(step)
    values.append(scalar)
  return {
      tag: (np.asarray(steps, np.int64), np.asarray(values, np.float64))
      for tag, (steps, values) in curves.items()
  }


def _scalar_of(value, tf) -> float | None:
  """The number in a summary value: tf.summary (v2) stores scalars as rank-0 tensors, the v1
  API as simple_value; anything else (images, histograms, text) is not a curve."""
  if value.HasField("tensor"):
    array = tf.make_ndarray(value.tensor)
    if array.ndim == 0 and np.issubdtype(array.dtype, np.number):
      return float(array)
    return None
  if value.HasField("simple_value"):
    return float(value.simple_value)
  return None


def plot_training_curves(workdir: str, path: str | None = None) -> str:
  """Draws <workdir>/tensorboard's curves to `path` (default <workdir>/curves.png); returns it."""
  curves = read_scalars(paths.join(workdir, "tensorboard"))
  path = path or paths.join(workdir, FILE_NAME)
  from matplotlib.ticker import MaxNLocator

  figure = figures.new_figure(WIDTH_PX, HEIGHT_PX)
  last_step = max((int(steps[-1]) for steps, _ in curves.values()), default=0)
  figure.suptitle(f"{os.path.basename(str(workdir).rstrip('/'))}: step {last_step}")
  panels = _panels_for(curves)
  for axes, (title, y_label, scale, series) in zip(figure.subplots(2, 2).flat, panels):
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel(y_label)
    axes.grid(True, alpha=0.3)
    drawn = [(tag, label, style, marker) for tag, label, style, marker in series if tag in curves]
    for tag, label, style, marker in drawn:
      steps, values = curves[tag]
      # A short run logs a handful of points (one, if it logs only at its end): mark them.
      marker = marker or ("." if len(steps) <= _MARK_POINTS_UP_TO else "")
      axes.plot(steps, values * scale, linestyle=style, marker=marker, markersize=5, label=label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title in _LOG_SCALE_TITLES and drawn:
      axes.set_yscale("log")
    if title in _FULL_RANGE_TITLES:
      axes.set_ylim(0.0, 102.0)
    if not drawn:  # e.g. a run stopped before its first log line
      axes.text(
          0.5, 0.5, "no data yet", transform=axes.transAxes, ha="center", va="center", color="grey"
      )
    elif len(series) > 1:
      axes.legend(loc="lower right" if title in _FULL_RANGE_TITLES else "best")
  return figures.save_png(figure, path)


def write_training_curves(workdir: str) -> str | None:
  """The training loop's call: plot_training_curves, with any failure only logged."""
  path = figures.draw_or_warn("the training curves", lambda: plot_training_curves(workdir))
  if path:
    logging.info("Training curves: %s", path)
  return path
