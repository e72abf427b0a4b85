"""The Table-3 grid of `eval.classify` as a PNG heat-map (1000 x 500 pixels).

Rows: ensembles of the first k models (k = 1..N), then the best single model when N > 1;
columns: the crop schemes (1, 10, 144 crops per image). Two panels: top-5 error (the paper's
Table-3 measure) and top-1 error (added because top-5 error saturates on small label sets
such as the 10 digits); each cell shows its value in percent, coloured on the panel's own
scale from green (lowest) to red (highest), with a colour bar for that range (none,
and one middle colour, when all cells are equal).
"""

from __future__ import annotations

from collections.abc import Mapping
import textwrap
from typing import Any

import numpy as np

from eval import report
from runtime import figures

WIDTH_PX, HEIGHT_PX = 1000, 500


def _grid(table: list[Mapping[str, Any]], schemes: list[int], names: list[str]):
  """(row labels, [rows, schemes] top-5 errors, same for top-1 errors) from results['table']."""
  cells: dict[Any, dict[int, Mapping[str, Any]]] = {}
  for row in table:
    key = "best" if row.get("best_single") else row["num_models"]
    cells.setdefault(key, {})[row["crops"]] = row
  keys = sorted(k for k in cells if k != "best") + (["best"] if "best" in cells else [])
  labels = [
      f"best single\n({names[cells[k][schemes[0]]['models'][0]]})"
      if k == "best"
      else f"{k} model{'s' if k > 1 else ''}"
      for k in keys
  ]
  top5_error = np.asarray([[cells[k][s]["top5_error"] for s in schemes] for k in keys])
  top1_error = np.asarray([[1.0 - cells[k][s]["top1_accuracy"] for s in schemes] for k in keys])
  return labels, top5_error, top1_error


def plot_table3(results: Mapping[str, Any], path: str) -> str:
  """Draws the heat-map of `eval.classification.evaluate`'s results to `path`; returns it."""
  schemes = sorted(results["crops"])
  names = report.short_names([model["name"] for model in results["models"]])
  labels, top5_error, top1_error = _grid(results["table"], schemes, names)
  figure = figures.new_figure(WIDTH_PX, HEIGHT_PX)
  # Wrapped: a folder source names its whole path, wider than the picture.
  figure.suptitle(
      textwrap.fill(
          f"Table 3: {results['num_images']} images of {results['source']}/{results['split']}, "
          f"{results['combine']}, {results.get('params', '?')} parameters",
          110,
      )
  )
  for axes, title, errors in zip(
      figure.subplots(1, 2), ("Top-5 error", "Top-1 error"), (top5_error, top1_error)
  ):
    _heat_map(axes, 100 * errors, labels, schemes, f"{title} (%)")
  return figures.save_png(figure, path)


def _heat_map(axes, percent: np.ndarray, row_labels, schemes, title: str) -> None:
  # Green is good (low error). The scale is the panel's own range, and the bar says how far
  # apart green and red are; a uniform panel has nothing to compare: middle colour, no bar.
  low, high = float(percent.min()), float(percent.max())
  uniform = high - low < 1e-9
  if uniform:
    low, high = low - 1.0, high + 1.0
  image = axes.imshow(percent, cmap="RdYlGn_r", aspect="auto", vmin=low, vmax=high)
  if not uniform:
    axes.figure.colorbar(image, ax=axes, shrink=0.8)
  axes.set_title(title)
  axes.set_xticks(range(len(schemes)), [str(s) for s in schemes])
  axes.set_yticks(range(len(row_labels)), row_labels)
  axes.set_xlabel("crops per image")
  axes.set_ylabel("models")
  for (row, column), value in np.ndenumerate(percent):
    red, green, blue, _ = image.cmap(image.norm(value))
    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on dark cells
    axes.text(
        column,
        row,
        f"{value:.2f}",
        ha="center",
        va="center",
        color="white" if dark else "black",
        fontsize=12,
    )
