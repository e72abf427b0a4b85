"""Several JAX processes on this machine, joined over 127.0.0.1: a multi-host job in miniature.

Each child gets the explicit-coordinator environment that `train.host` reads
(JAX_COORDINATOR_ADDRESS on a free loopback port, JAX_NUM_PROCESSES, JAX_PROCESS_ID) and
`devices_per_process` simulated CPU devices. Children run in their own sessions so that the
whole group can be signalled and, on failure or timeout, killed: nothing outlives the cluster.

    python -m tests.local_cluster --num_processes=2 --devices_per_process=2 -- \\
        python main.py --config=configs/digits.py --workdir=/tmp/digits_2proc \\
        --config.distributed=true
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
import os
import signal
import socket
import subprocess
import sys
import time

from tests import child_process

LOOPBACK = "127.0.0.1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Installed as sitecustomize in every child when `record_writes=True`: an audit hook that
# appends each file a Python process opens for writing to writes_<process id>.txt, so a test
# can tell which process wrote which file (the files themselves are identical).
_WRITE_RECORDER = """
import os, sys
_log = os.path.join(os.environ["LOCAL_CLUSTER_WRITES_DIR"],
                    "writes_" + os.environ.get("JAX_PROCESS_ID", "0") + ".txt")
def _record(event, args):
  if event == "open" and isinstance(args[0], str) and any(m in str(args[1] or "") for m in "wax"):
    if args[0] != _log:
      with open(_log, "a") as f:
        f.write(os.path.abspath(args[0]) + "\\n")
sys.addaudithook(_record)
"""


def cache_home(log_dir: str) -> str:
  """The XDG_CACHE_HOME of a cluster's children (and so of their compilation cache)."""
  return os.path.join(log_dir, "cache")


def free_loopback_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.bind((LOOPBACK, 0))
    return sock.getsockname()[1]


@dataclass
class ProcessResult:
  process_id: int
  returncode: int | None  # None: killed at the deadline
  log: str


class LocalCluster:
  """Context manager: starts the processes on enter, kills any still running on exit."""

  def __init__(
      self,
      command: Sequence[str],
      num_processes: int,
      *,
      devices_per_process: int = 1,
      log_dir: str,
      env: dict[str, str] | None = None,
      cwd: str | None = None,
      record_writes: bool = False,
  ):
    self.command, self.num_processes = list(command), num_processes
    self.devices_per_process, self.log_dir = devices_per_process, log_dir
    self.extra_env, self.cwd, self.record_writes = dict(env or {}), cwd, record_writes
    self.processes: list[subprocess.Popen] = []
    self.log_paths = [os.path.join(log_dir, f"process_{i}.log") for i in range(num_processes)]

  def _environment(self, process_id: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "JAX_COORDINATOR_ADDRESS": f"{LOOPBACK}:{port}",
            "JAX_NUM_PROCESSES": str(self.num_processes),
            "JAX_PROCESS_ID": str(process_id),
            "JAX_PLATFORMS": "cpu",
            "JAX_NUM_CPU_DEVICES": str(self.devices_per_process),
            "PYTHONUNBUFFERED": "1",
            # Tests must not fill (or be sped up by) the user's compilation cache.
            "XDG_CACHE_HOME": cache_home(self.log_dir),
        }
    )
    # The device count of a parent test process (conftest's XLA_FLAGS) must not leak in.
    env["XLA_FLAGS"] = child_process.xla_flags(suite_compile_flags=True)
    if self.record_writes:
      hook_dir = os.path.join(self.log_dir, "sitecustomize")
      env["PYTHONPATH"] = os.pathsep.join(
          p for p in (hook_dir, REPO_ROOT, env.get("PYTHONPATH")) if p
      )
      env["LOCAL_CLUSTER_WRITES_DIR"] = self.log_dir
    env.update(self.extra_env)
    return env

  def written_files(self, process_id: int) -> set[str]:
    """Paths process `process_id` opened for writing from Python (needs record_writes)."""
    path = os.path.join(self.log_dir, f"writes_{process_id}.txt")
    if not os.path.exists(path):
      return set()
    with open(path) as f:
      return set(f.read().split())

  def __enter__(self) -> LocalCluster:
    os.makedirs(self.log_dir, exist_ok=True)
    if self.record_writes:
      os.makedirs(os.path.join(self.log_dir, "sitecustomize"), exist_ok=True)
      with open(os.path.join(self.log_dir, "sitecustomize", "sitecustomize.py"), "w") as f:
        f.write(_WRITE_RECORDER)
    port = free_loopback_port()
    for process_id in range(self.num_processes):
      log = open(self.log_paths[process_id], "w")
      self.processes.append(
          subprocess.Popen(
              self.command,
              env=self._environment(process_id, port),
              cwd=self.cwd or REPO_ROOT,
              stdin=subprocess.DEVNULL,
              stdout=log,
              stderr=subprocess.STDOUT,
              start_new_session=True,
          )
      )
      log.close()  # the child holds its own descriptor
    return self

  def __exit__(self, *exc) -> None:
    self.kill()

  def signal_all(self, signum: int) -> None:
    for process in self.processes:
      if process.poll() is None:
        os.killpg(process.pid, signum)

  def kill(self) -> None:
    self.signal_all(signal.SIGKILL)
    for process in self.processes:
      process.wait()

  def logs(self) -> list[str]:
    texts = []
    for path in self.log_paths:
      with open(path, errors="replace") as f:
        texts.append(f.read())
    return texts

  def wait_for_log(self, text: str, timeout: float) -> bool:
    """True once every process's log contains `text`; False at the deadline or if one exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if all(text in log for log in self.logs()):
        return True
      if any(process.poll() is not None for process in self.processes):
        return False
      time.sleep(0.2)
    return False

  def wait(self, timeout: float) -> list[ProcessResult]:
    """Waits for every process; at the deadline (or soon after one fails) kills the rest.

    A process that fails leaves its peers waiting in a collective forever, so once one exits
    non-zero the others get 30 s to exit on their own.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      codes = [process.poll() for process in self.processes]
      if all(code is not None for code in codes):
        break
      if any(code not in (None, 0) for code in codes):
        deadline = min(deadline, time.monotonic() + 30)
      time.sleep(0.2)
    codes = [process.poll() for process in self.processes]
    self.kill()
    return [ProcessResult(i, code, log) for i, (code, log) in enumerate(zip(codes, self.logs()))]


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=1)
  parser.add_argument("--log_dir", default="/tmp/local_cluster")
  parser.add_argument("--timeout", type=float, default=3600)
  parser.add_argument("command", nargs="+")
  args = parser.parse_args(argv)
  with LocalCluster(
      args.command,
      args.num_processes,
      devices_per_process=args.devices_per_process,
      log_dir=args.log_dir,
  ) as cluster:
    results = cluster.wait(args.timeout)
  for result in results:
    print(
        f"process {result.process_id}: exit {result.returncode}, log {cluster.log_paths[result.process_id]}"
    )
  return max(abs(r.returncode) if r.returncode is not None else 124 for r in results)


if __name__ == "__main__":
  sys.exit(main())
