"""What the binaries' PNG pictures share: fixed pixel sizes, no display, atomic writes, warnings.

Pictures: training curves (train/curves.py), the Table-3 heat-map (eval/table_figure.py),
per-class precision-recall (detection/precision_recall_figure.py).

Figures are matplotlib `Figure` objects rendered by the Agg canvas, never through pyplot:
no display is needed, nothing global changes (a notebook that calls these functions keeps its
own backend), and no figure outlives its function. matplotlib is imported on first use, so a
binary without it still runs and only the picture is missing (with a warning).
"""

from __future__ import annotations

from collections.abc import Callable
import os
import shutil
import tempfile

from absl import logging

from runtime import paths

# Sizes are given in pixels; at this resolution one inch is 100 of them and text stays legible.
DPI = 100


def new_figure(width_px: int, height_px: int):
  """An empty matplotlib Figure of exactly width_px x height_px pixels when saved."""
  from matplotlib.figure import Figure

  return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")


def save_png(figure, path: str) -> str:
  """Writes `figure` to `path` through a temporary file, so a reader (or a run killed while
  drawing) never sees half a PNG; a path in a bucket gets the finished file in one upload."""
  local = tempfile.mkdtemp(prefix="figure_") if paths.is_remote(path) else None
  target = os.path.join(local, "figure.png") if local else path
  temporary = f"{target}.tmp-{os.getpid()}"
  try:
    # No bbox_inches='tight': it would crop the picture to another size on every run.
    figure.savefig(temporary, format="png", dpi=DPI)
    os.replace(temporary, target)
    if local:
      paths.upload(target, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)
    if local:
      shutil.rmtree(local, ignore_errors=True)
  return path


def draw_or_warn(what: str, draw: Callable[[], str]) -> str | None:
  """Runs `draw` (which returns the path it wrote); a failure is a warning, not an error:
  a picture is never worth failing a run, an evaluation or a report that already succeeded."""
  try:
    return draw()
  except Exception as error:  # missing matplotlib, full disk...
    logging.warning(
        "Could not draw %s (%s: %s); the other outputs are unaffected.",
        what,
        type(error).__name__,
        error,
    )
    return None
