"""Per-class precision-recall curves of a detection run as a PNG (900 x 600 pixels).

One line per class: the VOC precision-recall curve (detections of all test images in
descending score order, `metrics.voc_curves`), labelled with the class name, its VOC10+ AP
(the area under the curve's monotone envelope) and its number of ground-truth boxes. `run.py`
writes it as <workdir>/detection/precision_recall.png, beside report.md.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np

from detection import metrics
from runtime import figures

WIDTH_PX, HEIGHT_PX = 900, 600
FILE_NAME = "precision_recall.png"


def _label(result: metrics.ClassAP) -> str:
  if not result.num_gt:
    return f"{result.name}: no ground truth"
  missing = "" if result.num_detections else ", no detections"
  return f"{result.name}: AP {100 * result.voc10:.1f}, {result.num_gt} GT{missing}"


def plot_precision_recall(
    curves: Sequence[tuple[np.ndarray, np.ndarray, int]],
    result: metrics.DetectionMetrics,
    path: str,
    *,
    title: str,
    iou_threshold: float,
) -> str:
  """Draws `curves` (metrics.voc_curves, one per class of `result.per_class`) to `path`."""
  from matplotlib import colormaps

  palette = colormaps["tab10" if len(curves) <= 10 else "tab20"].colors  # VOC has 20 classes
  figure = figures.new_figure(WIDTH_PX, HEIGHT_PX)
  axes = figure.subplots()
  for index, ((recall, precision, _), class_ap) in enumerate(
      zip(curves, result.per_class, strict=True)
  ):
    # A class without detections (or without ground truth) has no points; it keeps its
    # legend entry, so the picture names every class.
    axes.plot(
        recall,
        precision,
        color=palette[index % len(palette)],
        linewidth=1.8,
        marker="." if len(recall) <= 30 else "",
        label=_label(class_ap),
    )
  mean_ap = "n/a" if math.isnan(result.map_voc10) else f"{100 * result.map_voc10:.1f}"
  axes.set_title(
      f"{title}\nprecision-recall at IoU {iou_threshold} (VOC rules); "
      f"mAP {mean_ap} (VOC10+, all-point)"
  )
  axes.set_xlabel("recall")
  axes.set_ylabel("precision")
  axes.set_xlim(0.0, 1.02)
  axes.set_ylim(0.0, 1.02)
  axes.grid(True, alpha=0.3)
  axes.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
  return figures.save_png(figure, path)
