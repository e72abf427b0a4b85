"""The binaries' launcher: large host allocations in transparent huge pages, by one re-exec.

Every binary starts with

    from runtime import launch
    launch.reexec_if_program(__name__)  # before the heavy imports below

which, when the module runs as a program, re-executes the process once with the setting
below, before JAX, TensorFlow or anything else heavy has been imported (imported as a
module, e.g. by a test, it does nothing).

Why: XLA:CPU allocates every step's outputs and temporaries afresh, and glibc serves each
large request with a new mmap, so every training step page-faults its whole working set in
4 KiB pages. With the glibc tunable `glibc.malloc.hugetlb=1`, malloc asks the kernel for
transparent huge pages (2 MiB) on those mappings (madvise): 512x fewer faults and TLB misses
(measurements: benchmarks/README.md, "What made the difference", item 5).

glibc reads tunables only when a process starts, hence the re-exec; it happens before any
heavy import. Harmless where it cannot apply: glibc older than 2.35 ignores the tunable, and
a kernel with transparent huge pages set to `never` ignores the madvise. Set
GOOGLENET_SYSTEM_MALLOC=1 to keep the system's defaults, or set GLIBC_TUNABLES yourself.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = "glibc.malloc.hugetlb=1"
OPT_OUT = "GOOGLENET_SYSTEM_MALLOC"


def wants_reexec(environ=os.environ) -> bool:
  """True on Linux/glibc when neither the user nor an earlier exec has set GLIBC_TUNABLES."""
  if environ.get(OPT_OUT, "") not in ("", "0"):
    return False
  if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
    return False
  return "GLIBC_TUNABLES" not in environ


def reexec_with_allocator_settings() -> None:
  """Re-executes this process (same interpreter and arguments) with GLIBC_TUNABLES set.

  Returns normally when nothing needs doing (already applied, opted out, not glibc).
  """
  if not wants_reexec():
    return
  os.environ["GLIBC_TUNABLES"] = TUNABLES
  sys.stdout.flush()
  sys.stderr.flush()
  # sys.orig_argv keeps interpreter options and `-m package.module`, so the re-executed process
  # is started exactly like this one.
  os.execv(sys.executable, sys.orig_argv)


# TensorFlow's C++ log level for the binaries unless the user sets one: 2 keeps errors and
# drops warnings and notices. TensorFlow only runs the host-side input pipeline here, and its
# C++ warnings are noise there: tf.data's graph optimiser logs about 1 KB per region-warping
# function ("Error in PredictCost() for the op CropAndResize"), plus oneDNN and CUDA banners.
# TF_CPP_MIN_LOG_LEVEL=0 shows them again.
TF_LOG_LEVEL = "2"


def reexec_if_program(module_name: str) -> None:
  """When `module_name` (a binary's `__name__`) is "__main__": TensorFlow's C++ log level
  (TF_LOG_LEVEL, unless set) and `reexec_with_allocator_settings()`. Nothing when the binary
  is imported as a module."""
  if module_name == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    reexec_with_allocator_settings()
