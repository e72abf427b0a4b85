"""Progress where a person is watching: tqdm bars in a terminal or notebook, else nothing.

Used by every long loop of the binaries (training steps, evaluation passes, proposals); the
plain log lines they also write are what batch jobs and redirected logs keep.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys

import jax


def format_eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


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
      from tqdm.notebook import tqdm
    else:
      from tqdm import tqdm
  except ImportError:  # tqdm is a requirement, but a bar is never worth failing a run over
    return _NoBar()
  return tqdm(
      total=total, initial=initial, desc=description, unit=unit, dynamic_ncols=True, leave=True
  )
