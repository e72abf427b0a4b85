"""A lost host ends a multi-process job promptly and plainly, instead of hanging.

When one process of a job dies (its machine fails, the scheduler kills it), its peers sit in
their next collective or checkpoint barrier until JAX's coordination service notices the
missing heartbeats and aborts them with a C++ stack dump, a minute or more later, leaving
process 0's workdir lock behind. Here every process publishes a counter in the coordination
service's key-value store every few seconds and watches its peers' counters: a peer whose
counter stops for `timeout_seconds`, or a coordination service (it runs in process 0) that
stops answering for that long, is lost. The survivor then runs its registered farewells
(the training loop releases the workdir lock and names the last complete checkpoint), prints
one `error:` line and exits with status 1 at once, without JAX's shutdown barrier, which
would wait for the dead process. The scheduler's relaunch resumes from that checkpoint.

When process 0 itself dies, JAX's coordination client in every other process sees the
service's connection reset and aborts that process within a second (SIGABRT, a C++ stack
dump, no line from here): its `missed_heartbeat_callback` cannot be a Python function in
jaxlib 0.10 (the call fails to convert its absl::Status argument and terminates). The
service-silence rule above covers a process 0 that hangs instead of dying.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator
import contextlib
import logging as std_logging
import os
import sys
import threading
import time

from absl import logging
import jax
from jax._src import distributed

KEY_PREFIX = "googlenet_jax/alive/"
# config.lost_host_seconds's default (train/config.py, which keeps JAX out of its imports).
DEFAULT_SECONDS = 45.0
# JAX's own detection (the coordination service's heartbeat timeout) aborts the survivors;
# it is kept this much later than ours so that ours speaks first.
JAX_HEARTBEAT_MARGIN_SECONDS = 60

# Each returns a sentence for the error line (or None) and must not block: it runs on the
# watch thread while the main thread may be stuck in a collective.
_farewells: list[Callable[[], str | None]] = []
_watch: PeerWatch | None = None


@contextlib.contextmanager
def farewell(say_and_clean_up: Callable[[], str | None]) -> Iterator[None]:
  """Runs `say_and_clean_up` if a peer is lost while the block runs, or while an error leaves
  it: the error may be the peer's death seen from here (a failed checkpoint barrier)."""
  _farewells.append(say_and_clean_up)
  try:
    yield
  except Exception:
    settle_before_reporting_an_error()
    raise
  finally:
    _farewells.remove(say_and_clean_up)


def jax_heartbeat_timeout(timeout_seconds: float) -> int:
  """The heartbeat timeout to give `jax.distributed.initialize` (JAX's default: 100 s)."""
  return int(max(100, timeout_seconds + JAX_HEARTBEAT_MARGIN_SECONDS))


class PeerWatch:
  """Publishes this process's heartbeat and judges its peers' (two daemon threads: the one
  that talks to the service may block in an RPC, the judge never does)."""

  def __init__(self, client, process_index: int, process_count: int, timeout_seconds: float):
    self._client, self._me, self._count = client, process_index, process_count
    self._timeout = timeout_seconds
    # Six beats per timeout: a peer is judged lost only after several missed beats, never
    # for one late read (and at most one round of requests per 0.1 s on tiny timeouts).
    self._interval = max(0.1, min(5.0, timeout_seconds / 6))
    now = time.monotonic()
    self._service_answered = now
    self._peer_changed = {p: now for p in range(process_count) if p != process_index}
    self._peer_value: dict[int, str | None] = {p: None for p in self._peer_changed}
    self._peer_advances = {p: 0 for p in self._peer_changed}
    self._lock = threading.Lock()
    self._stopped = threading.Event()

  def stop(self) -> None:
    """No verdicts from now on: the process is exiting (its peers too, and process 0's
    service may close first)."""
    self._stopped.set()

  def start(self) -> PeerWatch:
    for target, name in ((self._beat, "heartbeat"), (self._judge, "judge")):
      threading.Thread(target=target, name=f"lost_host_{name}", daemon=True).start()
    return self

  def _beat(self) -> None:
    beats = 0
    while True:
      beats += 1
      try:
        self._client.key_value_set(f"{KEY_PREFIX}{self._me}", str(beats), allow_overwrite=True)
        values = {}
        for peer in self._peer_changed:
          try:
            values[peer] = self._client.key_value_try_get(f"{KEY_PREFIX}{peer}")
          except Exception:  # not published yet (still starting): judged by the deadline
            values[peer] = None
      except Exception:  # the service is unreachable: judged by the deadline
        time.sleep(self._interval)
        continue
      now = time.monotonic()
      with self._lock:
        self._service_answered = now
        for peer, value in values.items():
          if value is not None and value != self._peer_value[peer]:
            self._peer_value[peer], self._peer_changed[peer] = value, now
            self._peer_advances[peer] += 1
      time.sleep(self._interval)

  def hear_everyone_again(self) -> None:
    """Returns once every peer's heartbeat has advanced twice since the call; if one never
    does, the judge ends the process meanwhile (at most the timeout from its last beat).
    Twice: the first advance seen may be a beat the peer wrote just before it died, read
    here only after the call; the second was written after that read, so the peer lived."""
    with self._lock:
      before = dict(self._peer_advances)
    while not self._stopped.is_set():
      with self._lock:
        if all(self._peer_advances[p] >= before[p] + 2 for p in before):
          return
      time.sleep(self._interval / 2)

  def lost(self) -> tuple[int, str] | None:
    """(process index, why) of a lost process, or None while every peer is heard from."""
    now = time.monotonic()
    with self._lock:
      silent = now - self._service_answered
      if silent > self._timeout:
        return 0, (
            f"the coordination service, which runs in process 0, has not answered for "
            f"{silent:.0f} s"
        )
      for peer, changed in sorted(self._peer_changed.items()):
        if now - changed > self._timeout:
          return peer, f"no heartbeat from it for {now - changed:.0f} s"
    return None

  def _judge(self) -> None:
    while not self._stopped.is_set():
      if (verdict := self.lost()) and not self._stopped.is_set():
        exit_lost(*verdict, process_count=self._count)
        return
      time.sleep(self._interval / 2)


def exit_lost(process: int, why: str, process_count: int) -> None:
  """Farewells, one `error:` line, status 1: no shutdown barrier waits for the dead."""
  sentences = []
  for say in list(_farewells):
    try:
      sentence = say()
    except Exception as error:  # the error line must come out whatever a farewell does
      sentence = f"(also: {type(error).__name__}: {error})"
    if sentence:
      sentences.append(sentence)
  message = " ".join(
      [f"error: lost process {process} of {process_count} ({why}); this process stops too."]
      + sentences
  )
  for handler in std_logging.getLogger().handlers + logging.get_absl_logger().handlers:
    with contextlib.suppress(Exception):
      handler.flush()
  sys.stdout.flush()
  print(message, file=sys.stderr, flush=True)
  os._exit(1)


def watch_peers(timeout_seconds: float) -> PeerWatch | None:
  """Starts watching the other processes of this job (None with one process)."""
  global _watch
  if jax.process_count() == 1 or distributed.global_state.client is None:
    return None
  _watch = PeerWatch(
      distributed.global_state.client, jax.process_index(), jax.process_count(), timeout_seconds
  ).start()
  # Runs before JAX's own exit handler (registered when jax was imported), which shuts the
  # runtime down in step with the other processes.
  atexit.register(_watch.stop)
  return _watch


def settle_before_reporting_an_error() -> None:
  """A binary about to report an error calls this first: a lost peer can be the cause (a
  checkpoint barrier or collective that failed because it died), and then the lost-host
  line, not that error, must end the run. Costs two heartbeat rounds when all are alive."""
  if _watch is not None:
    _watch.hear_everyone_again()
