"""Median wall time of a call, shared by the benchmarks that time one thing at a time."""

from __future__ import annotations

from collections.abc import Callable
import time


def median_seconds(run: Callable[[], object], reps: int) -> float:
  """Median seconds of `reps` calls of `run`, after one untimed call (compilation, warm-up).

  `run` must wait for its own result (e.g. `block_until_ready`): JAX dispatches asynchronously.
  """
  run()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]
