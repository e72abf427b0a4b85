"""benchmarks/winograd.py computes the same convolution (and gradients) as XLA's direct one.

The conv_algorithms benchmark compares speed only; these tests make sure it times a correct
algorithm, on sizes that are and are not multiples of the output tile.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import winograd


def _operands(size, c_in=5, c_out=7, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((2, size, size + 1, c_in)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)), jnp.float32)
  return x, kernel


@pytest.mark.parametrize("m", winograd.TILE_SIZES)
@pytest.mark.parametrize("size", [4, 7, 9])
def test_values_match_the_direct_convolution(m, size):
  x, kernel = _operands(size)
  expected = winograd.direct_conv3x3(x, kernel)
  got = winograd.winograd_conv3x3(x, kernel, m)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(jnp.abs(expected).max()))


@pytest.mark.parametrize("m", winograd.TILE_SIZES)
def test_gradients_match_the_direct_convolution(m):
  x, kernel = _operands(7, seed=1)
  cotangent = jnp.asarray(np.random.default_rng(2).standard_normal((2, 7, 8, 7)), jnp.float32)

  def gradients(convolution):
    return jax.grad(lambda x, k: jnp.sum(convolution(x, k) * cotangent), argnums=(0, 1))(x, kernel)

  expected = gradients(winograd.direct_conv3x3)
  got = gradients(lambda x, k: winograd.winograd_conv3x3(x, k, m))
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * float(jnp.abs(e).max()))


def test_unsupported_tile_and_kernel_are_errors():
  x, kernel = _operands(4)
  with pytest.raises(ValueError, match="one of"):
    winograd.winograd_conv3x3(x, kernel, 3)
  with pytest.raises(ValueError, match="3x3 kernel"):
    winograd.winograd_conv3x3(x, kernel[:1, :1], 2)
