"""XLA compiler options for the training programs, chosen per backend, and a CPU dtype warning.

Why, on CPU: XLA:CPU (jax 0.10) hands convolutions, matmuls, reductions and element-wise
chains to YNNPACK ("ynn fusions"), and for the training step's convolutions XLA's own are
faster in all three directions; matmuls (the 1x1 convolutions, kernels/conv1x1.py) and
reductions stay with YNNPACK. Inference keeps XLA's defaults, which are faster there. The
measurements behind each choice: benchmarks/README.md, "What made the difference", item 1.

GPU and TPU get no options: the ynn fusion flag is an XLA:CPU knob. If a future jaxlib no
longer knows the option, training logs a warning and runs with XLA's defaults.
"""

from __future__ import annotations

import functools
import os

from absl import logging
import jax

_YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
_YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def mesh_platform(mesh: jax.sharding.Mesh) -> str:
  """The platform ('cpu', 'gpu', 'tpu') of the devices a program on `mesh` is compiled for."""
  return mesh.devices.flat[0].platform


def train_step_options(platform: str | None = None) -> dict[str, str] | None:
  """`compiler_options` for `jax.jit` of a training step compiled for `platform`.

  Pass the platform of the step's mesh (`mesh_platform`); None means JAX's default backend.
  Compiler options are given when a program is compiled for its devices, so unlike the op
  formulations (kernels/select.py) they are never part of an exported program.
  """
  if (platform or jax.default_backend()) != "cpu":
    return None
  options = {_YNN_FUSION_TYPE: _YNN_WITHOUT_CONVOLUTIONS}
  return options if _compiler_accepts(tuple(options.items())) else None


def init_options(platform: str | None = None, environ=os.environ) -> dict[str, str] | None:
  """`compiler_options` for the program that draws the initial training state.

  It runs once, in milliseconds, yet XLA:CPU's default optimisation of its random-number code
  took half of that phase of a cold launch: 18.5 -> 8.9 s for the digits default's init,
  12.1 -> 6.3 s for the full-size `paper` GoogLeNet, at level 1 (benchmarks/README.md). Level 1
  draws bit for bit the parameters of the default level; level 0 would be faster still but
  rounds the normal initializers differently in the last bit (tests/test_compiler_options.py).
  GPU and TPU compile it as they are, and a level set in XLA_FLAGS is left to rule.
  """
  if (platform or jax.default_backend()) != "cpu":
    return None
  if "xla_backend_optimization_level" in environ.get("XLA_FLAGS", ""):
    return None
  options = {"xla_backend_optimization_level": "1"}
  return options if _compiler_accepts(tuple(options.items())) else None


@functools.cache
def _compiler_accepts(options: tuple[tuple[str, str], ...]) -> bool:
  try:
    jax.jit(lambda: 0, compiler_options=dict(options)).lower().compile()
  except Exception as error:  # the runtime's error type varies
    logging.warning(
        "XLA rejected the CPU options %s (%s); training compiles with XLA's defaults "
        "instead, which were slower on CPU (see train/compiler_options.py).",
        dict(options),
        error,
    )
    return False
  return True


def compute_dtype_warning(dtype: str, backend: str | None = None) -> str | None:
  """Why `dtype` is a poor choice on `backend` (default: JAX's), or None.

  bfloat16 halves activation memory on GPU/TPU, but XLA:CPU (jax 0.10) does not run bfloat16
  convolutions on the CPU's bfloat16 units: both the training step and inference are slower
  in bfloat16 than in float32 there (benchmarks/README.md).
  """
  if dtype == "bfloat16" and (backend or jax.default_backend()) == "cpu":
    return (
        "config.model.dtype='bfloat16' on XLA:CPU is slower than float32 here (training "
        "step 1.26x, inference 1.5x the float32 time, benchmarks/README.md); set "
        "--config.model.dtype=float32 on CPU and keep bfloat16 for GPU/TPU."
    )
  return None
