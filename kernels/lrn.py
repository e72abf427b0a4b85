"""Caffe's across-channel local response normalisation, with a hand-written gradient.

    y_c = x_c * s_c ** -beta,   s_c = k + alpha / n * sum_{|j - c| <= n // 2} x_j ** 2

Why a custom VJP: autodiff of this formula leaves XLA a backward that reads the window sum
and the power at five channel offsets, and XLA fused the lot, power included, into the next
layer's ReLU mask, recomputing it for every offset (measurements: benchmarks/README.md,
"What made the difference", item 6). The gradient written out is

    dx_c = g_c s_c ** -beta - 2 alpha beta / n * x_c * sum_{|j - c| <= n // 2} g_j x_j s_j ** (-beta - 1)

one window sum of an element-wise product, with `s` saved from the forward. Nothing here is
CPU-specific. For beta = 0.75 (every LRN in GoogLeNet and AlexNet) s ** -0.75 is computed as
rsqrt(s * sqrt(s)), which is cheaper than a general power (exp and log) and agrees with it to
float32 rounding.

The window is centred and zero-padded at both channel ends, as in Caffe's LRNLayer
(ACROSS_CHANNELS); alpha is divided by the window size n, unlike TensorFlow's
`local_response_normalization` (docs/paper_notes.md, "Local response normalisation"). The computation is in float32 for
every input dtype: the power and the division lose too much in bfloat16.
"""

from __future__ import annotations

import functools

import jax
from jax import lax
import jax.numpy as jnp


def _channel_window_sum(v: jax.Array, size: int) -> jax.Array:
  """sum_{|j - c| <= size // 2} v_j for each channel c (last axis), zero beyond the ends."""
  half = size // 2
  padded = jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(half, half)])
  channels = v.shape[-1]
  return sum(padded[..., i : i + channels] for i in range(size))


def _inverse_power(s: jax.Array, beta: float) -> jax.Array:
  if beta == 0.75:
    # One chain with a single use of each intermediate: XLA keeps it in one fusion, where
    # rsqrt(s) * sqrt(rsqrt(s)) left a standalone sqrt pass.
    return lax.rsqrt(s * jnp.sqrt(s))
  return jnp.power(s, -beta)


def _normaliser(x32: jax.Array, size: int, alpha: float, k: float) -> jax.Array:
  return k + (alpha / size) * _channel_window_sum(jnp.square(x32), size)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def local_response_norm(x: jax.Array, size: int, alpha: float, beta: float, k: float) -> jax.Array:
  """Caffe LRN over the last axis; float32 result for any input dtype."""
  return _forward(x, size, alpha, beta, k)[0]


def _forward(x, size, alpha, beta, k):
  x32 = x.astype(jnp.float32)
  s = _normaliser(x32, size, alpha, k)
  return x32 * _inverse_power(s, beta), (x, s)


def _backward(size, alpha, beta, k, residuals, g):
  del k
  x, s = residuals
  x32 = x.astype(jnp.float32)
  g = g.astype(jnp.float32)
  inv_power = _inverse_power(s, beta)
  window = _channel_window_sum(g * x32 * inv_power / s, size)
  dx = g * inv_power - (2.0 * alpha * beta / size) * x32 * window
  return (dx.astype(x.dtype),)


local_response_norm.defvjp(_forward, _backward)
