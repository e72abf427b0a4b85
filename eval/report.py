"""Host-side bookkeeping: per-batch top-k answers -> accuracy cells -> Table-3 report.

A cell is (which models, how many crops). Rows follow the paper's Table 3: the ensembles of the
first k models (k = 1..N, in the order given) for every crop scheme, plus the best single model
(highest top-1 with the largest crop scheme), each with its cost (models x crops), top-1
accuracy, top-5 error and the top-5 error relative to the base cell (1 model, fewest crops).
Top-1: the label is the first prediction; top-5 error: the label is not among the first five
(docs/paper_notes.md, "Evaluation crops").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import os
from typing import Any

import numpy as np

KINDS = ("single", "ensemble")


class Tally:
  """Counts of correct answers per (kind, models, scheme, class) over the real examples."""

  def __init__(self, num_models: int, schemes: Sequence[int], num_classes: int):
    self.num_models = num_models
    self.schemes = tuple(schemes)
    self.num_classes = num_classes
    self.class_count = np.zeros(num_classes, np.int64)
    shape = (len(KINDS), num_models, len(self.schemes), num_classes)
    self.top1 = np.zeros(shape, np.int64)
    self.top5 = np.zeros(shape, np.int64)
    self.labels: list[np.ndarray] = []
    self.positions: list[np.ndarray] = []  # each image's position in the split
    self.predicted_classes: list[np.ndarray] = []  # full ensemble, [num_schemes, b, k]
    self.predicted_scores: list[np.ndarray] = []

  @property
  def count(self) -> int:
    return int(self.class_count.sum())

  def add(
      self,
      ranked: Mapping[str, np.ndarray],
      labels: np.ndarray,
      mask: np.ndarray,
      positions: np.ndarray | None = None,
  ) -> None:
    """ranked: `scoring.rank_models` output for one batch, as numpy; padding (mask False) is
    dropped here, so every real example is counted exactly once. positions: each example's
    position in the split (the pipeline's 'index'); None: batches arrive in the split's order."""
    mask = np.asarray(mask, bool)
    if positions is None:
      positions = self.count + np.cumsum(mask) - 1
    self.positions.append(np.asarray(positions)[mask])
    labels = np.asarray(labels)[mask]
    one_hot = np.eye(self.num_classes, dtype=np.int64)[labels]  # [b, C]
    self.class_count += one_hot.sum(axis=0)
    for index, kind in enumerate(KINDS):
      classes = np.asarray(ranked[f"{kind}_classes"])[:, :, mask]  # [M, S, b, k]
      hits = classes == labels[None, None, :, None]
      self.top1[index] += hits[..., 0].astype(np.int64) @ one_hot
      self.top5[index] += hits.any(axis=-1).astype(np.int64) @ one_hot
    self.labels.append(labels)
    self.predicted_classes.append(np.asarray(ranked["ensemble_classes"])[-1][:, mask])
    self.predicted_scores.append(np.asarray(ranked["ensemble_scores"])[-1][:, mask])

  def cell(self, kind: str, model_index: int, scheme: int) -> dict[str, Any]:
    """Accuracy of model `model_index` alone ('single') or of models 0..model_index."""
    index = (KINDS.index(kind), model_index, self.schemes.index(scheme))
    top1, top5, count = self.top1[index], self.top5[index], self.count
    models = [model_index] if kind == "single" else list(range(model_index + 1))
    with np.errstate(invalid="ignore", divide="ignore"):
      per_class_top1 = np.where(self.class_count > 0, top1 / self.class_count, np.nan)
      per_class_top5 = np.where(self.class_count > 0, top5 / self.class_count, np.nan)
    return {
        "kind": kind,
        "models": models,
        "num_models": len(models),
        "crops": scheme,
        "cost": len(models) * scheme,
        "count": count,
        "top1_accuracy": float(top1.sum() / max(count, 1)),
        "top5_accuracy": float(top5.sum() / max(count, 1)),
        "top5_error": float(1.0 - top5.sum() / max(count, 1)),
        "per_class": {
            "count": self.class_count.tolist(),
            "top1_accuracy": [None if np.isnan(v) else float(v) for v in per_class_top1],
            "top5_accuracy": [None if np.isnan(v) else float(v) for v in per_class_top5],
        },
    }

  def best_single_model(self) -> int:
    """Index of the model with the highest top-1 under the largest scheme (first on ties)."""
    largest = self.schemes.index(max(self.schemes))
    return int(np.argmax(self.top1[KINDS.index("single"), :, largest].sum(axis=-1)))

  def predictions(self) -> dict[str, Any]:
    """Top-k classes and scores of every image for the full ensemble, per crop scheme, in the
    split's order as one process reads it, on any number of processes (which interleave their
    shards batch by batch)."""
    empty = np.zeros((len(self.schemes), 0, 5))
    order = np.argsort(np.concatenate(self.positions), kind="stable") if self.labels else []
    classes = np.concatenate(self.predicted_classes, axis=1)[:, order] if self.labels else empty
    scores = np.concatenate(self.predicted_scores, axis=1)[:, order] if self.labels else empty
    return {
        "labels": np.concatenate(self.labels)[order].tolist() if self.labels else [],
        "models": list(range(self.num_models)),
        "by_crops": {
            str(scheme): {
                "top5_classes": classes[row].astype(np.int64).tolist(),
                "top5_scores": np.round(scores[row].astype(np.float64), 6).tolist(),
            }
            for row, scheme in enumerate(self.schemes)
        },
    }


def table_cells(tally: Tally) -> list[dict[str, Any]]:
  """The Table-3 rows: ensembles of the first k models, then the best single model if N > 1."""
  rows = [
      tally.cell("ensemble", k, scheme) for k in range(tally.num_models) for scheme in tally.schemes
  ]
  if tally.num_models > 1:
    best = tally.best_single_model()
    rows += [dict(tally.cell("single", best, scheme), best_single=True) for scheme in tally.schemes]
  return rows


def short_names(names: Sequence[str]) -> list[str]:
  """Directory base names when they tell the models apart, else the names as given."""
  bases = [os.path.basename(os.path.normpath(name)) for name in names]
  return bases if len(set(bases)) == len(bases) and all(bases) else list(names)


def markdown_table(rows: Sequence[Mapping[str, Any]], model_names: Sequence[str]) -> str:
  """Table 3 of the paper as Markdown, in percent. 'Compared to base' is the paper's column
  (top-5 error minus that of the first row); the top-1 change is added because top-5 error
  saturates on small label sets such as the 10 digits."""
  names = short_names(model_names)
  base = rows[0]
  lines = [
      "| Models | Crops | Cost | Top-1 accuracy | Top-5 error | Compared to base "
      "| Top-1 vs base |",
      "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for row in rows:
    if row.get("best_single"):
      label = f"best single ({names[row['models'][0]]})"
    else:
      label = str(row["num_models"])
    if row is base:
      top5_delta = top1_delta = "base"
    else:
      top5_delta = f"{100 * (row['top5_error'] - base['top5_error']):+.2f}%"
      top1_delta = f"{100 * (row['top1_accuracy'] - base['top1_accuracy']):+.2f}%"
    lines.append(
        f"| {label} | {row['crops']} | {row['cost']} | "
        f"{100 * row['top1_accuracy']:.2f}% | {100 * row['top5_error']:.2f}% | "
        f"{top5_delta} | {top1_delta} |"
    )
  return "\n".join(lines)
