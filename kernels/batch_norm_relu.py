"""BatchNorm followed by ReLU, with a hand-written gradient that reads each tensor twice.

Why: differentiating `nn.BatchNorm` then `nn.relu` leaves XLA with ~10 element-wise and
reduction passes over every activation per training step (normalise, mask, the chain rule
through mean and variance), and on CPU those passes are bound by memory bandwidth. The
custom VJP below does the forward in one reduction pass (sum and sum of squares) plus one
element-wise pass, and the backward in one reduction pass (sum of the masked gradient and of
its product with the input) plus one element-wise pass, and never writes x - mean out
(measurements: benchmarks/README.md, "What made the difference", item 4). Nothing here is
CPU-specific: fewer passes over memory help every backend.

Semantics are flax's `nn.BatchNorm(use_fast_variance=True)` + ReLU: batch mean and the biased
variance E[x^2] - E[x]^2 (clipped at 0) over every axis but the last, in float32; the running
averages are updated the same way; the variables have the same names, shapes and initialisers
(`scale`, `bias` params; `mean`, `var` batch_stats), so checkpoints and imported weights are
unchanged. Gradients equal `jax.grad` of the flax layers up to float rounding
(tests/test_batch_norm.py), including the gradient through the returned batch statistics.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

Dtype = Any


def _reduce_axes(x: jax.Array) -> tuple[int, ...]:
  return tuple(range(x.ndim - 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """relu(batch_norm(x)) over all axes but the last; returns (y, batch mean, batch var)."""
  return _forward(x, scale, bias, epsilon)[0]


def _normalize_relu(x32, mean, inv_std, scale, bias):
  """relu((x - mean) * inv_std * scale + bias) as one multiply-add; also returns the multiplier."""
  multiplier = scale.astype(jnp.float32) * inv_std
  offset = bias.astype(jnp.float32) - mean * multiplier
  return jnp.maximum(x32 * multiplier + offset, 0.0), multiplier


def _forward(x, scale, bias, epsilon):
  x32 = x.astype(jnp.float32)
  axes = _reduce_axes(x)
  mean = jnp.mean(x32, axes)
  var = jnp.maximum(jnp.mean(jnp.square(x32), axes) - jnp.square(mean), 0.0)
  inv_std = lax.rsqrt(var + epsilon)
  y, multiplier = _normalize_relu(x32, mean, inv_std, scale, bias)
  y = y.astype(x.dtype)
  return (y, mean, var), (x, y, mean, inv_std, multiplier, scale, bias)


def _backward(epsilon, residuals, cotangents):
  del epsilon
  x, y, mean, inv_std, multiplier, scale, bias = residuals
  g, g_mean, g_var = cotangents
  count = x.size // x.shape[-1]
  axes = _reduce_axes(x)
  x32 = x.astype(jnp.float32)
  # ReLU's derivative is 0 at 0, as jax.nn.relu's; y > 0 exactly where the input to it was.
  g_pre = jnp.where(y > 0, g.astype(jnp.float32), 0.0)
  sum_g = jnp.sum(g_pre, axes)
  # sum(g (x - mean)) as sum(g x) - mean sum(g): x - mean is never materialised, which saves
  # a write and a read of the activation (the same cancellation as the forward's variance).
  sum_g_xhat = (jnp.sum(g_pre * x32, axes) - mean * sum_g) * inv_std
  # d/dx of the normalisation, plus the paths through the returned mean (1/count each) and
  # variance (2 (x - mean) / count each).
  centered_coefficient = (2.0 * g_var - multiplier * inv_std * sum_g_xhat) / count
  constant = (g_mean - multiplier * sum_g) / count - mean * centered_coefficient
  dx = g_pre * multiplier + x32 * centered_coefficient + constant
  return dx.astype(x.dtype), sum_g_xhat.astype(scale.dtype), sum_g.astype(bias.dtype)


batch_norm_relu.defvjp(_forward, _backward)


class BatchNormReLU(nn.Module):
  """`nn.BatchNorm` + `nn.relu` with the same variables, fused; see the module docstring."""

  use_running_average: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  # False: no learned scale (a constant 1), as TF-slim's batch_norm(scale=False) in inception_v1.
  use_scale: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = (x.shape[-1],)
    running_mean = self.variable(
        "batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features
    )
    running_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
    if self.use_scale:
      scale = self.param("scale", nn.initializers.ones, features, self.param_dtype)
    else:
      scale = jnp.ones(features, self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, features, self.param_dtype)
    dtype = self.dtype or jnp.result_type(x, scale)
    if self.use_running_average:
      inv_std = lax.rsqrt(running_var.value + self.epsilon)
      y, _ = _normalize_relu(x.astype(jnp.float32), running_mean.value, inv_std, scale, bias)
      return y.astype(dtype)
    y, mean, var = batch_norm_relu(x.astype(dtype), scale, bias, self.epsilon)
    if not self.is_initializing():
      running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
      running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    return y
