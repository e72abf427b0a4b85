"""Progress where a person is watching: tqdm bars in a terminal or notebook, else nothing.

Used by every long loop of the binaries (training steps, evaluation passes, proposals); the
plain log lines they also write are what batch jobs and redirected logs keep.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
import time

from absl import logging
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


class Progress:
  """A bar where someone watches, and a log line every `every_seconds` and at the end: done of
  total, rate and ETA. The rate leaves the first update out, since it includes XLA's
  compilation (or a cold cache), which would make the first ETAs far too long."""

  def __init__(
      self,
      description: str,
      total: int,
      unit: str = "image",
      every_seconds: float = 30.0,
      detail: str = "",
  ):
    self.description, self.total, self.unit = description, total, unit
    self.every_seconds, self.detail = every_seconds, detail
    self.start = self.last_log = time.time()
    self.done = 0
    self._first_done_at: float | None = None
    self._done_after_first = 0
    self.bar = progress_bar(total, description, unit=unit)

  def rate(self) -> float:
    """Units per second, from the second update on when there is one."""
    now = time.time()
    if self._done_after_first and now > self._first_done_at:
      return self._done_after_first / (now - self._first_done_at)
    return self.done / max(now - self.start, 1e-9)

  def update(self, count: int = 1) -> None:
    self.done += count
    self.bar.update(count)
    if self._first_done_at is None:
      self._first_done_at = time.time()
    else:
      self._done_after_first += count
    if time.time() - self.last_log >= self.every_seconds or self.done >= self.total:
      self.last_log = time.time()
      rate = self.rate()
      eta = (self.total - self.done) / rate if rate else 0.0
      units = self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")
      logging.info(
          "%s: %d/%d %s, %.1f %s/s%s, ETA %s",
          self.description,
          self.done,
          self.total,
          units,
          rate,
          units,
          self.detail,
          format_eta(eta),
      )

  def close(self) -> None:
    self.bar.close()
