"""What every test that starts a child process shares: the one deadline and the XLA flags.

A deadline in this suite only guards against a hang: a correct program must never reach it,
however loaded the machine. One value, so none is tuned to a quiet machine's timings: the
longest child (a 2-process training run) takes about a minute alone on 2 quiet cores and
several with two other CPU-bound jobs beside the suite; 20 minutes leaves room for both and
still ends a hung run well inside CI's limit.
"""

from __future__ import annotations

import os

HANG_GUARD_SECONDS = 20 * 60

# The XLA_FLAGS the suite was started with, before tests/conftest.py added its own (set once,
# by the first conftest import, and inherited by pytest-xdist's workers).
CALLER_XLA_FLAGS_ENV = "GOOGLENET_TEST_CALLER_XLA_FLAGS"


def xla_flags(*, suite_compile_flags: bool) -> str:
  """XLA_FLAGS for a child on its own device count (JAX_NUM_CPU_DEVICES, or one device).

  The caller's own flags always pass on, so a suite held to another instruction set
  (`XLA_FLAGS=--xla_cpu_max_isa=AVX2`) holds its children to it too; with
  `suite_compile_flags` the suite's quick-compile flags (tests/conftest.py) do as well. The
  suite's 8 simulated devices never do.
  """
  source = os.environ.get("XLA_FLAGS" if suite_compile_flags else CALLER_XLA_FLAGS_ENV, "")
  return " ".join(
      f for f in source.split() if not f.startswith("--xla_force_host_platform_device_count")
  )
