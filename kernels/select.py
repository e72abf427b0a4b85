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
to float summation order); only their speed differs by platform.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Any

from flax import linen as nn
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


def kernels_for_mesh(kernels: str, num_devices: int) -> str:
  """The choice for a training step partitioned over `num_devices`: 'auto' becomes 'xla' there.

  Measured (jax 0.10.2, XLA:CPU, digits config at width 1/8): on one device the CPU
  formulations and XLA's ops give the same gradients (step-1 gradient norm 134.820 against
  134.819); on 8 devices (one process, or 2 processes x 4) the CPU formulations gave 136.749
  and ~90 of 305 parameters up to 30% off after one step, with the 1x1 matmuls as the cause
  (XLA's 1x1 convolutions with the custom pool gradient: 134.819) and the result depending on
  XLA's optimisation level, while XLA's ops matched one device to 2e-5. Until that is
  understood, partitioned programs use XLA's ops; CPU meshes of several devices only
  simulate clusters, so speed matters less there than the right gradient. GPU and TPU get
  XLA's ops from 'auto' anyway.
  """
  check_kernels(kernels)
  return "xla" if kernels == "auto" and num_devices > 1 else kernels


def model_for_mesh(model: Any, num_devices: int) -> Any:
  """`model` with every `kernels` field in it, its own or a submodule's (MultiBox's trunk),
  set by `kernels_for_mesh` for a training step partitioned over `num_devices`."""
  changes = {}
  for field in dataclasses.fields(model):
    if not field.init or field.name in ("parent", "name"):
      continue
    value = getattr(model, field.name)
    if field.name == "kernels":
      chosen = kernels_for_mesh(value, num_devices)
      if chosen != value:
        changes["kernels"] = chosen
    elif isinstance(value, nn.Module):  # a submodule instance (MultiBox's trunk)
      submodule = model_for_mesh(value, num_devices)
      if submodule is not value:
        changes[field.name] = submodule
  return model.clone(**changes) if changes else model


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
