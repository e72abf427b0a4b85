"""The LRN's hand-written gradient against autodiff of the plain formula and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.lrn import local_response_norm


def plain_lrn(x, size, alpha, beta, k):
  """The formula as autodiff sees it: centred zero-padded channel window, general power."""
  half = size // 2
  squares = jnp.pad(jnp.square(x), [(0, 0)] * (x.ndim - 1) + [(half, half)])
  window = sum(squares[..., i : i + x.shape[-1]] for i in range(size))
  return x * jnp.power(k + alpha / size * window, -beta)


def _activations(shape, seed=0):
  # Large values make the normaliser, and so the cross-channel gradient term, matter.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * 40, jnp.float32)


@pytest.mark.parametrize(
    "size,alpha,beta,k,shape",
    [
        (5, 1e-4, 0.75, 1.0, (2, 5, 7, 16)),  # GoogLeNet's and AlexNet's LRN
        (5, 1e-4, 0.75, 1.0, (1, 3, 3, 3)),  # fewer channels than the window
        (3, 2e-3, 0.6, 2.0, (2, 4, 4, 9)),  # the general-power path
    ],
)
def test_values_and_gradient_match_autodiff_of_the_formula(size, alpha, beta, k, shape):
  x = _activations(shape)
  upstream = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
  ours = lambda x_: jnp.sum(local_response_norm(x_, size, alpha, beta, k) * upstream)
  plain = lambda x_: jnp.sum(plain_lrn(x_, size, alpha, beta, k) * upstream)
  np.testing.assert_allclose(
      local_response_norm(x, size, alpha, beta, k),
      plain_lrn(x, size, alpha, beta, k),
      rtol=2e-6,
      atol=1e-6,
  )
  got = jax.jit(jax.grad(ours))(x)
  expected = jax.jit(jax.grad(plain))(x)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  # The window term is what a gradient treating the normaliser as constant would miss; the
  # data must make it matter.
  constant_normaliser = upstream * plain_lrn(x, size, alpha, beta, k) / x
  assert not np.allclose(expected, constant_normaliser, rtol=1e-2), "window term too small"


def test_gradient_matches_finite_differences_in_float64():
  x = np.asarray(_activations((1, 2, 2, 6), seed=2), np.float64)
  direction = np.random.default_rng(3).standard_normal(x.shape)
  upstream = np.random.default_rng(4).standard_normal(x.shape)
  f = lambda x_: float(
      np.sum(
          np.asarray(plain_lrn(jnp.asarray(x_, jnp.float32), 5, 1e-4, 0.75, 1.0), np.float64)
          * upstream
      )
  )
  eps = 1e-2  # activations are ~40, float32 forward: a step well above rounding
  numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
  grad = jax.grad(
      lambda x_: jnp.sum(
          local_response_norm(x_, 5, 1e-4, 0.75, 1.0) * jnp.asarray(upstream, jnp.float32)
      )
  )(jnp.asarray(x, jnp.float32))
  analytic = float(np.sum(np.asarray(grad, np.float64) * direction))
  assert analytic == pytest.approx(numeric, rel=1e-3)


def test_bfloat16_input_gets_a_bfloat16_gradient():
  x = _activations((1, 2, 2, 8)).astype(jnp.bfloat16)
  grad = jax.grad(lambda x_: jnp.sum(local_response_norm(x_, 5, 1e-4, 0.75, 1.0)))(x)
  assert grad.dtype == jnp.bfloat16
  expected = jax.grad(lambda x_: jnp.sum(plain_lrn(x_, 5, 1e-4, 0.75, 1.0)))(x.astype(jnp.float32))
  np.testing.assert_allclose(np.asarray(grad, np.float32), expected, rtol=1e-2, atol=1e-3)
