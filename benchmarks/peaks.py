"""Peak dense bfloat16 FLOP/s of the accelerators researchers run this on, per chip.

Vendor figures for dense (not 2:4 sparse) bfloat16 matrix math; a step's utilisation is its
achieved FLOP/s (XLA's cost analysis over the measured step time) divided by this. On CPU
there is no vendor figure that XLA reaches: `benchmarks.throughput` measures XLA's matmul
peak there instead (`xla_gemm_gflops` below, also used by benchmarks.roofline).
"""

from __future__ import annotations

from benchmarks.timing import median_seconds

# (substring of jax's device_kind, peak bfloat16 TFLOP/s, source). Checked in this order, so
# more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    ("H100 PCIe", 756.0, "NVIDIA H100 Tensor Core GPU datasheet (PCIe, dense BF16)"),
    # The datasheet gives the NVL 1,671 TFLOP/s BF16 with 2:4 sparsity; dense is half of it.
    ("H100 NVL", 835.0, "NVIDIA H100 Tensor Core GPU datasheet (NVL, dense BF16)"),
    ("H100", 989.0, "NVIDIA H100 Tensor Core GPU datasheet (SXM, dense BF16)"),
    ("H200", 989.0, "NVIDIA H200 Tensor Core GPU datasheet (SXM, dense BF16)"),
    ("A100", 312.0, "NVIDIA A100 Tensor Core GPU datasheet (dense BF16)"),
    ("TPU v5 lite", 197.0, "Google Cloud TPU v5e documentation (per chip)"),
    ("TPU v5e", 197.0, "Google Cloud TPU v5e documentation (per chip)"),
    ("TPU v5p", 459.0, "Google Cloud TPU v5p documentation (per chip)"),
    ("TPU v5", 459.0, "Google Cloud TPU v5p documentation (per chip)"),
    ("TPU v4", 275.0, "Google Cloud TPU v4 documentation (per chip)"),
)


def peak_for(device_kind: str) -> tuple[float, str] | None:
  """(peak FLOP/s, source) for a device kind, or None when the table does not know it."""
  for name, tflops, source in PEAK_BF16_TFLOPS:
    if name.lower() in device_kind.lower():
      return tflops * 1e12, source
  return None


# (M, K, N): a large square GEMM, and 1x1 convolutions of GoogLeNet at batch 32 as matmuls
# (conv2_reduce at 56x56, inception 3b's 1x1 at 28x28, 4b's at 14x14).
GEMM_SHAPES = ((4096, 4096, 4096), (100352, 64, 64), (25088, 256, 128), (6272, 512, 160))


def xla_gemm_gflops(dtype: str, reps: int) -> float:
  """XLA's best median matmul rate over GEMM_SHAPES (float32 accumulation for bfloat16)."""
  import jax
  import jax.numpy as jnp

  best = 0.0
  for m, k, n in GEMM_SHAPES:
    a = jnp.ones((m, k), dtype)
    b = jnp.ones((k, n), dtype)
    matmul = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    seconds = median_seconds(lambda matmul=matmul, a=a, b=b: matmul(a, b).block_until_ready(), reps)
    best = max(best, 2 * m * k * n / seconds / 1e9)
  return best
