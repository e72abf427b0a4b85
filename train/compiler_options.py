"""XLA compiler options for the training step, chosen per backend, and a CPU dtype warning.

Why, on CPU: XLA:CPU (jax 0.10) hands convolutions, matmuls, reductions and element-wise
chains to YNNPACK ("ynn fusions"). For convolutions that is the slower choice for training:
measured on the 2-core AVX-512 machine at GoogLeNet's shapes, batch 32,
  * conv2 (3x3, 64->192, 56x56): forward 134 ms with YNNPACK vs 74 ms with XLA's own (Eigen)
    convolution; input gradient 185 vs 101 ms (YNNPACK's ran on one core: 163 ms pinned to
    one CPU);
  * whole training step of the `torchvision` variant, same process alternating with torch:
    0.50x torch's speed with YNNPACK convolutions, 0.64-0.65x without.
YNNPACK stays on for matmuls and reductions (the 1x1 convolutions are matmuls here, see
inception/conv.py, and BatchNorm's statistics are reductions): turning all ynn fusions off
made the step 2.3x slower, and YNNPACK element-wise fusions cost 15% of the step.
Inference is the exception: there YNNPACK fuses BatchNorm+ReLU into the convolution, and the
forward pass measured 2-3% faster with XLA's defaults (560/565 ms against 572/583 ms per
batch, separate processes alternating), so only the training step uses these options.

GPU and TPU get no options: the ynn fusion flag is an XLA:CPU knob. If a future jaxlib no
longer knows the option, training logs a warning and runs with XLA's defaults.
"""
from __future__ import annotations

import functools

import jax
from absl import logging

_YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
_YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def mesh_platform(mesh: jax.sharding.Mesh) -> str:
  """The platform ('cpu', 'gpu', 'tpu') of the devices a program on `mesh` is compiled for."""
  return mesh.devices.flat[0].platform


def train_step_options(platform: str | None = None) -> dict[str, str] | None:
  """`compiler_options` for `jax.jit` of a training step compiled for `platform`.

  Pass the platform of the step's mesh (`mesh_platform`); None means JAX's default backend.
  Compiler options are given when a program is compiled for its devices, so unlike the op
  formulations (inception/kernels.py) they are never part of an exported program.
  """
  if (platform or jax.default_backend()) != "cpu":
    return None
  options = {_YNN_FUSION_TYPE: _YNN_WITHOUT_CONVOLUTIONS}
  return options if _compiler_accepts(tuple(options.items())) else None


@functools.cache
def _compiler_accepts(options: tuple[tuple[str, str], ...]) -> bool:
  try:
    jax.jit(lambda: 0, compiler_options=dict(options)).lower().compile()
  except Exception as error:  # pylint: disable=broad-except  # the runtime's error type varies
    logging.warning("XLA rejected the CPU training options %s (%s); training uses XLA's "
                    "defaults, which were slower on CPU (see train/compiler_options.py).",
                    dict(options), error)
    return False
  return True


def compute_dtype_warning(dtype: str, backend: str | None = None) -> str | None:
  """Why `dtype` is a poor choice on `backend` (default: JAX's), or None.

  bfloat16 halves activation memory on GPU/TPU, but XLA:CPU (jax 0.10) does not run bfloat16
  convolutions on the CPU's bfloat16 units: on the 2-core AVX-512/AMX machine of
  benchmarks/README.md the `torchvision` variant's training step took 2303 ms in bfloat16
  against 1833 ms in float32, inference 855 against 558 ms.
  """
  if dtype == "bfloat16" and (backend or jax.default_backend()) == "cpu":
    return ("config.model.dtype='bfloat16' on XLA:CPU is slower than float32 here (training "
            "step 1.26x, inference 1.5x the float32 time, benchmarks/README.md); set "
            "--config.model.dtype=float32 on CPU and keep bfloat16 for GPU/TPU.")
  return None
