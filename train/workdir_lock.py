"""One run per workdir: a lock file that names its holder and goes stale when the holder dies.

A job restarted while its old incarnation is still alive (common with cluster schedulers)
would otherwise train twice into one checkpoint directory. `<workdir>/run.lock` holds the
holder's host, pid and start time; a background thread touches it every HEARTBEAT_SECONDS.
A second run stops at once with a message naming the holder, unless the lock is stale: its
holder is a pid on this host that no longer exists, or (any host) the heartbeat stopped more
than STALE_AFTER_SECONDS ago (the holder crashed or its machine went away). A stale lock is
taken over with a warning. Process 0 of a multi-process job holds the lock for the job.

In a bucket (`gs://...`) no exclusive create is available through every client this project
reaches Cloud Storage with (TensorFlow's, fsspec's, the test suite's emulator honour no
if-generation-match precondition alike), so the lock is a lease: a starter that finds no lock
writes its record, waits SETTLE_SECONDS and reads it back. Of two starters racing, the later
write wins and the earlier one, reading the other's record, backs off as from a busy workdir.
The heartbeat rewrites the record with its time (objects have no mtime to touch).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from absl import logging

from runtime import cli, paths

LOCK_FILE = "run.lock"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 180.0
# Longer than a starter's gap between finding no lock and writing its own (one request).
SETTLE_SECONDS = 1.0


class WorkdirBusyError(cli.UserError, RuntimeError):
  """Another live run holds the workdir."""


class WorkdirUnusableError(ValueError):
  """The workdir cannot be created or written (a file, read-only, no permission)."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _read(path: str) -> dict | None:
  try:
    return json.loads(paths.read_text(path))
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}  # torn or foreign content: judged by its age alone


def stale_reason(holder: dict, age_seconds: float, host: str | None = None) -> str | None:
  """Why a lock is stale, or None when its holder may still be running."""
  host = socket.gethostname() if host is None else host
  pid = holder.get("pid")
  if holder.get("host") == host and isinstance(pid, int) and not _pid_alive(pid):
    return f"process {pid} on this host no longer exists"
  if age_seconds > STALE_AFTER_SECONDS:
    return f"its heartbeat stopped {age_seconds:.0f} s ago"
  return None


class WorkdirLock:
  """Context manager: holds `<workdir>/run.lock` for the duration of a run."""

  def __init__(self, workdir: str):
    self.workdir = paths.absolute(workdir)
    self.path = paths.join(self.workdir, LOCK_FILE)
    self._remote = paths.is_remote(self.path)
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self._record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "token": uuid.uuid4().hex,  # this lock among several of one process
    }

  def _ours(self, holder: dict | None) -> bool:
    return bool(holder) and holder.get("token") == self._record["token"]

  def _write_record(self) -> None:
    paths.write_text(self.path, json.dumps({**self._record, "refreshed": time.time()}))

  def _try_create(self) -> bool:
    if self._remote:
      if paths.exists(self.path):
        return False
      self._write_record()
      time.sleep(SETTLE_SECONDS)
      return self._ours(_read(self.path))
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      json.dump(self._record, f)
    return True

  def _age_seconds(self, holder: dict) -> float:
    if self._remote:
      refreshed = holder.get("refreshed")
      return time.time() - refreshed if isinstance(refreshed, (int, float)) else float("inf")
    return time.time() - os.path.getmtime(self.path)

  def acquire(self) -> None:
    workdir = self.workdir
    try:
      paths.makedirs(workdir)
      created = self._try_create()
    except Exception as error:  # a file in the way, a read-only or full disk, no bucket
      raise WorkdirUnusableError(_unusable_message(workdir, error)) from error
    attempts = 0
    while not created:  # a takeover can race another starter, which then sees a fresh lock
      attempts += 1
      if attempts > 3:
        raise WorkdirBusyError(f"could not take the lock {self.path}: other runs keep taking it.")
      holder = _read(self.path)
      if holder is not None:
        self._take_over_if_stale(holder)
      created = self._try_create()
    self._thread = threading.Thread(target=self._heartbeat, name="workdir-lock", daemon=True)
    self._thread.start()

  def _take_over_if_stale(self, holder: dict) -> None:
    try:
      age = self._age_seconds(holder)
    except FileNotFoundError:
      return  # released meanwhile
    reason = stale_reason(holder, age)
    if reason is None:
      raise WorkdirBusyError(
          f"{self.workdir} is in use by another run: process {holder.get('pid')} "
          f"on host {holder.get('host')}, started {holder.get('started')} (lock file "
          f"{self.path}, refreshed {age:.0f} s ago). Stop that run first, or use another "
          f"--workdir. If that run is dead, the lock counts as stale after "
          f"{STALE_AFTER_SECONDS:.0f} s without a heartbeat; or delete {self.path}."
      )
    logging.warning(
        "Taking over the stale lock %s of process %s on %s (%s).",
        self.path,
        holder.get("pid"),
        holder.get("host"),
        reason,
    )
    try:
      paths.remove(self.path)
    except FileNotFoundError:
      pass

  def _heartbeat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      try:
        if not self._remote:
          os.utime(self.path)
        elif self._ours(_read(self.path)):
          self._write_record()
        else:  # removed by hand, or taken over: not ours to keep alive
          return
      except Exception:  # the disk or the bucket went away: nothing to keep alive
        return

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
    if self._ours(_read(self.path)):
      try:
        paths.remove(self.path)
      except Exception as error:  # a read-only disk: the lock goes stale, as after a crash
        logging.warning(
            "Could not remove the lock %s (%s); the next run will find it stale.", self.path, error
        )

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _unusable_message(workdir: str, error: Exception) -> str:
  if paths.is_remote(workdir):
    return (
        f"--workdir={workdir} cannot be used: {type(error).__name__}: {error}. Check that the "
        f"bucket exists and that this machine may write to it (`gcloud storage ls "
        f"{'/'.join(workdir.split('/')[:3])}`), or choose another --workdir."
    )
  if isinstance(error, OSError):
    return (
        f"--workdir={workdir} cannot be used: {error.strerror or error} "
        f"({error.filename or workdir}). Choose a writable directory."
    )
  return f"--workdir={workdir} cannot be used: {error}. Choose a writable directory."
