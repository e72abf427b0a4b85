"""runtime/lost_host.py's watch with a key-value store in memory: who is lost, what is said."""

import threading
import time

import pytest

from runtime import lost_host


class MemoryStore:
  """The two calls of JAX's coordination client the watch makes."""

  def __init__(self):
    self.values, self.answering = {}, True

  def key_value_set(self, key, value, allow_overwrite=False):
    if not self.answering:
      raise RuntimeError("UNAVAILABLE: connection reset")
    self.values[key] = value

  def key_value_try_get(self, key):
    if not self.answering:
      raise RuntimeError("UNAVAILABLE: connection reset")
    if key not in self.values:
      raise KeyError(key)
    return self.values[key]


class Peer:
  """Another process (1 unless told), beating while `alive` and until the test ends."""

  def __init__(self, store, test_over, index=1):
    self.store, self.alive, self.test_over, self.index = store, True, test_over, index
    threading.Thread(target=self._beat, daemon=True).start()

  def _beat(self):
    count = 0
    while not self.test_over.is_set():
      if self.alive:
        count += 1
        self.store.values[f"{lost_host.KEY_PREFIX}{self.index}"] = str(count)
      time.sleep(0.05)


@pytest.fixture
def test_over():
  over = threading.Event()
  yield over
  over.set()


@pytest.fixture
def exits(monkeypatch, test_over):
  """Records the exit status instead of ending the test process; the judge thread that
  called it then waits for the test's end, as if the process had ended."""
  said = []

  def record(code):
    said.append(code)
    test_over.wait()

  monkeypatch.setattr(lost_host.os, "_exit", record)
  monkeypatch.setattr(lost_host, "_farewells", [])
  return said


def wait_until(condition, seconds=30.0):
  deadline = time.monotonic() + seconds
  while not condition() and time.monotonic() < deadline:
    time.sleep(0.05)
  return condition()


def test_a_silent_peer_is_lost_and_the_farewells_speak(exits, test_over, capsys):
  store = MemoryStore()
  peer = Peer(store, test_over)
  watch = lost_host.PeerWatch(store, 0, 2, timeout_seconds=1.0)
  with lost_host.farewell(lambda: "The last complete checkpoint is ckpt/7."):
    watch.start()
    watch.hear_everyone_again()  # returns: process 1 beats
    assert watch.lost() is None
    peer.alive = False
    assert wait_until(lambda: exits == [1]), "the judge never spoke"
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert line.startswith("error: lost process 1 of 2 (no heartbeat from it for ")
  assert line.endswith("this process stops too. The last complete checkpoint is ckpt/7.")


def test_a_silent_coordination_service_is_process_0_lost(exits, test_over, capsys):
  store = MemoryStore()
  Peer(store, test_over, index=0)  # process 0 lives on; only its service stops answering
  watch = lost_host.PeerWatch(store, 1, 2, timeout_seconds=1.0).start()
  watch.hear_everyone_again()
  store.answering = False
  assert wait_until(lambda: exits == [1]), "the judge never spoke"
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert line.startswith("error: lost process 0 of 2 (the coordination service, which runs")
  assert watch.lost()[0] == 0


def test_an_error_leaving_a_farewell_block_waits_for_the_verdict(exits, test_over, monkeypatch):
  """The error may be the dead peer seen from here: the lost-host line must win."""
  store = MemoryStore()
  peer = Peer(store, test_over)
  watch = lost_host.PeerWatch(store, 0, 2, timeout_seconds=1.0).start()
  monkeypatch.setattr(lost_host, "_watch", watch)
  watch.hear_everyone_again()
  peer.alive = False
  settled = []

  def fail_in_block():
    try:
      with lost_host.farewell(lambda: None):
        try:
          raise OSError("checkpoint barrier failed")
        finally:
          settled.append("unwinding")
    except OSError:
      settled.append("reported")

  worker = threading.Thread(target=fail_in_block, daemon=True)
  worker.start()
  # The dead peer's last beat, written before it died, is read only after the error: that
  # one advance must not count as the peer heard from again.
  assert wait_until(lambda: settled == ["unwinding"])
  time.sleep(0.2)
  store.values[f"{lost_host.KEY_PREFIX}1"] = "last beat"
  # The judge ends the process (here: records it) while the error is still held back.
  assert wait_until(lambda: exits == [1]), "the judge never spoke"
  assert worker.is_alive() and settled == ["unwinding"]
  peer.alive = True  # (a peer heard from again lets the error through)
  worker.join(timeout=30)
  assert settled == ["unwinding", "reported"]


def test_no_verdict_once_the_process_is_exiting(exits, test_over):
  """At exit (atexit, before JAX's shutdown) the watch stops: peers leaving then, or process
  0's service closing first, must not turn a finished run into status 1."""
  store = MemoryStore()
  peer = Peer(store, test_over)
  watch = lost_host.PeerWatch(store, 0, 2, timeout_seconds=1.0).start()
  watch.hear_everyone_again()
  watch.stop()
  peer.alive, store.answering = False, False
  time.sleep(3.0)  # three timeouts
  assert exits == [] and watch.lost() is not None  # silent, but nobody is told
