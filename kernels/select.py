"""Which formulation of an op a program uses: XLA's own, or the one that is faster on XLA:CPU.

`model.kernels` (a GoogLeNet field, hence a config key) selects it:
  * 'auto' (default): chosen when the program is lowered, per platform, with
    `jax.lax.platform_dependent`: the CPU formulations in a program lowered for CPU, XLA's
    ops in one lowered for CUDA, ROCm or TPU. A program exported from a CPU host with
    `jax.export(..., platforms=('cuda',))` therefore holds no CPU formulation, and the choice
    does not depend on which backend happens to be JAX's default while tracing.
  * 'cpu': the CPU formulations everywhere (tests of the formulations themselves).
  * 'xla': XLA's ops everywhere (benchmarks that measure what the formulations gain).

The CPU formulations: 1x1 convolutions as matmuls (kernels/conv1x1.py) and the max-pool
gradient without select_and_scatter (kernels/max_pool.py). They compute the same values (up
to float summation order); only their speed differs by platform. That holds on a mesh of
several devices and processes too: the gradient differences once seen there were ReLU's kink
met within rounding, which any change of summation order shows (tests/test_train_sharding.py,
tests/test_multiprocess.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

KERNELS = ("auto", "cpu", "xla")

# The CPU formulations run under this name scope, so a lowered program shows where they are.
CPU_SCOPE = "cpu_formulation"


def check_kernels(kernels: str) -> str:
  if kernels not in KERNELS:
    raise ValueError(
        f"kernels={kernels!r}: choose one of {KERNELS} ('auto' picks per platform "
        "when the program is lowered)."
    )
  return kernels


def select(kernels: str, cpu: Callable[..., Any], xla: Callable[..., Any], *operands: Any) -> Any:
  """cpu(*operands) or xla(*operands), as `kernels` says; 'auto' decides at lowering."""
  check_kernels(kernels)

  def on_cpu(*args):
    with jax.named_scope(CPU_SCOPE):
      return cpu(*args)

  if kernels == "cpu":
    return on_cpu(*operands)
  if kernels == "xla":
    return xla(*operands)
  return jax.lax.platform_dependent(*operands, cpu=on_cpu, default=xla)
