"""Winograd F(m x m, 3 x 3) convolution built from XLA ops: a FLOP-saving 3x3 convolution.

Why it is here (benchmarks only, not in the model): GoogLeNet's 3x3 convolutions are two thirds
of its FLOPs, and XLA's direct float32 convolution already runs at the machine's matmul peak
on the CPU (benchmarks.roofline), so only an algorithm with fewer multiplications could take
the training step under its FLOP floor. Winograd's minimal filtering (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", arXiv 1509.09308) computes an m x m output tile
from an (m+2) x (m+2) input tile with (m+2)^2 multiplications instead of 9 m^2: 2.25x fewer for
F(2x2, 3x3), 4x fewer for F(4x4, 3x3). `benchmarks.conv_algorithms` measures whether that
pays once the tile transforms, which are memory-bound element-wise work, are counted.

The three stages, each a separate function so the benchmark can time them apart:
  1. input transform V = B^T d B of every (m+2)^2 input tile (tiles overlap by 2 pixels);
  2. one batched matmul per tile position, M[p] = V[p] @ U[p], with U = G g G^T the
     transformed kernel;
  3. output transform Y = A^T M A, tiles written side by side.
Gradients are JAX's autodiff of these stages, so they are the exact gradients of the
computed function (each stage is linear).
"""

from __future__ import annotations

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

# B^T, G, A^T of Lavin & Gray (arXiv 1509.09308), section 4.1 (m = 2) and 4.2 (m = 4).
_MATRICES = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}
TILE_SIZES = tuple(_MATRICES)


def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(B^T, G, A^T) of F(m x m, 3 x 3)."""
  if m not in _MATRICES:
    raise ValueError(f"Winograd output tile must be one of {TILE_SIZES}, got {m}")
  return tuple(np.asarray(matrix, np.float64) for matrix in _MATRICES[m])


def _combine(coefficients: np.ndarray, terms: list[jax.Array]) -> jax.Array:
  """sum_i c_i t_i, skipping zero coefficients: the transforms are sparse small-integer sums."""
  total = None
  for coefficient, term in zip(coefficients, terms):
    if coefficient == 0:
      continue
    scaled = term if coefficient == 1 else -term if coefficient == -1 else coefficient * term
    total = scaled if total is None else total + scaled
  return total


def _tiles(length: int, m: int) -> int:
  return -(-length // m)


def input_transform(x: jax.Array, m: int) -> jax.Array:
  """NHWC input of a 'SAME' 3x3 convolution -> V of shape [(m+2)^2, N * tiles, C]."""
  bt, _, _ = matrices(m)
  a = m + 2
  n, height, width, channels = x.shape
  rows, cols = _tiles(height, m), _tiles(width, m)
  padded = jnp.pad(x, ((0, 0), (1, rows * m + 1 - height), (1, cols * m + 1 - width), (0, 0)))
  # Separable: B^T along the rows of each tile, then B along its columns.
  row_taps = [lax.slice_in_dim(padded, i, i + m * (rows - 1) + 1, m, axis=1) for i in range(a)]
  row_mixed = [_combine(bt[xi], row_taps) for xi in range(a)]
  positions = []
  for xi in range(a):
    col_taps = [
        lax.slice_in_dim(row_mixed[xi], j, j + m * (cols - 1) + 1, m, axis=2) for j in range(a)
    ]
    positions.extend(_combine(bt[nu], col_taps) for nu in range(a))
  return jnp.stack(positions).reshape(a * a, n * rows * cols, channels)


def kernel_transform(kernel: jax.Array, m: int) -> jax.Array:
  """HWIO 3x3 kernel -> U of shape [(m+2)^2, C_in, C_out]."""
  _, g, _ = matrices(m)
  g = jnp.asarray(g, kernel.dtype)
  a = m + 2
  return jnp.einsum("xi,ijco,yj->xyco", g, kernel, g).reshape(a * a, *kernel.shape[2:])


def tile_products(v: jax.Array, u: jax.Array) -> jax.Array:
  """One [tiles, C_in] x [C_in, C_out] matmul per tile position."""
  return jnp.einsum("ptc,pco->pto", v, u)


def output_transform(products: jax.Array, image_shape: tuple[int, int, int], m: int) -> jax.Array:
  """[(m+2)^2, N * tiles, C_out] -> NHWC output, cropped to the input's height and width."""
  _, _, at = matrices(m)
  a = m + 2
  n, height, width = image_shape
  rows, cols = _tiles(height, m), _tiles(width, m)
  out_channels = products.shape[-1]
  grid = products.reshape(a, a, n, rows, cols, out_channels)
  col_mixed = [
      [_combine(at[s], [grid[xi, nu] for nu in range(a)]) for s in range(m)] for xi in range(a)
  ]
  tile_rows = [
      jnp.stack([_combine(at[r], [col_mixed[xi][s] for xi in range(a)]) for s in range(m)], axis=3)
      for r in range(m)
  ]
  y = jnp.stack(tile_rows, axis=2)  # [n, rows, r, cols, s, out]
  return y.reshape(n, rows * m, cols * m, out_channels)[:, :height, :width]


def winograd_conv3x3(x: jax.Array, kernel: jax.Array, m: int = 4) -> jax.Array:
  """Same values as a stride-1 'SAME' (pad 1) 3x3 NHWC/HWIO convolution, up to rounding."""
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f"Winograd F(m, 3) needs a 3x3 kernel, got {kernel.shape[:2]}")
  products = tile_products(input_transform(x, m), kernel_transform(kernel, m))
  return output_transform(products, x.shape[:3], m)


def direct_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return lax.conv_general_dilated(
      x, kernel, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
