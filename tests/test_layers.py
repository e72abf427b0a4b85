"""Layers checked against direct NumPy implementations of the reference semantics."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception.layers import (
    CeilMaxPool,
    LocalResponseNorm,
    adaptive_avg_pool,
    ceil_pool_output_size,
    valid_avg_pool,
)


def caffe_lrn_reference(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
  """Caffe LRNLayer (ACROSS_CHANNELS), written loop by loop from its formula."""
  out = np.empty_like(x)
  channels = x.shape[-1]
  half = size // 2
  for c in range(channels):
    lo, hi = max(0, c - half), min(channels, c + half + 1)
    window = np.sum(x[..., lo:hi] ** 2, axis=-1)
    out[..., c] = x[..., c] / (k + alpha / size * window) ** beta
  return out


@pytest.mark.parametrize("shape", [(2, 5, 7, 16), (1, 3, 3, 3)])
def test_lrn_matches_caffe_formula(shape):
  rng = np.random.default_rng(0)
  # Large activations make the normaliser matter: at unit scale it is ~1 and hides mistakes.
  x = (rng.standard_normal(shape) * 40).astype(np.float32)
  expected = caffe_lrn_reference(x.astype(np.float64))
  got = LocalResponseNorm().apply({}, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(expected, x, rtol=1e-3), "test data too small to exercise the normaliser"


def test_lrn_keeps_bfloat16_dtype():
  x = jnp.ones((1, 2, 2, 8), jnp.bfloat16) * 30
  assert LocalResponseNorm().apply({}, x).dtype == jnp.bfloat16


def torch_ceil_size(size, window, stride, pad):
  out = math.ceil((size + 2 * pad - window) / stride) + 1
  if (out - 1) * stride >= size + pad:
    out -= 1
  return out


@pytest.mark.parametrize("size", [7, 14, 28, 56, 112, 13, 15, 8, 5])
@pytest.mark.parametrize("window,stride,pad", [(3, 2, 0), (2, 2, 0), (3, 1, 1)])
def test_ceil_pool_sizes_match_caffe_rule(size, window, stride, pad):
  assert ceil_pool_output_size(size, window, stride, pad) == torch_ceil_size(
      size, window, stride, pad
  )


def test_googlenet_pool_chain_at_224():
  sizes = [112]
  for _ in range(4):
    sizes.append(ceil_pool_output_size(sizes[-1], 3, 2))
  assert sizes == [112, 56, 28, 14, 7]


def max_pool_reference(x, window, stride, pad):
  """Max over each window, ignoring positions outside the (padded-by-nothing) input."""
  n, h, w, c = x.shape
  oh, ow = (ceil_pool_output_size(s, window, stride, pad) for s in (h, w))
  out = np.full((n, oh, ow, c), -np.inf, x.dtype)
  for i in range(oh):
    for j in range(ow):
      r0, c0 = i * stride - pad, j * stride - pad
      patch = x[:, max(r0, 0) : min(r0 + window, h), max(c0, 0) : min(c0 + window, w)]
      out[:, i, j] = patch.max(axis=(1, 2))
  return out


@pytest.mark.parametrize(
    "size,window,stride,pad",
    [(14, 3, 2, 0), (9, 3, 2, 0), (14, 2, 2, 0), (7, 3, 1, 1), (1, 3, 2, 0)],
)
def test_ceil_max_pool_values(size, window, stride, pad):
  x = np.random.default_rng(1).standard_normal((2, size, size + 1, 3)).astype(np.float32)
  got = CeilMaxPool(window, stride, pad).apply({}, jnp.asarray(x))
  expected = (
      max_pool_reference(x, window, stride, pad) if size > 1 else x.max(axis=(1, 2), keepdims=True)
  )
  np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.parametrize(
    "size,window,stride", [(15, 3, 2), (14, 3, 2), (7, 2, 2), (14, 2, 2), (5, 3, 1), (2, 3, 2)]
)
def test_same_padded_max_pool_matches_tensorflow(size, window, stride):
  """TF-slim's pools ('SAME'); on odd maps they differ from Caffe's ceil rounding."""
  import tensorflow as tf

  x = np.random.default_rng(2).standard_normal((2, size, size + 1, 3)).astype(np.float32)
  got = CeilMaxPool(window, stride, same_padding=True).apply({}, jnp.asarray(x))
  expected = tf.nn.max_pool2d(x, window, stride, padding="SAME").numpy()
  np.testing.assert_array_equal(np.asarray(got), expected)
  if (size, window, stride) == (15, 3, 2):
    assert got.shape[1] == 8 and ceil_pool_output_size(size, window, stride) == 7


def test_adaptive_avg_pool_matches_torch_bins():
  x = np.random.default_rng(2).standard_normal((1, 14, 14, 2)).astype(np.float32)
  got = np.asarray(adaptive_avg_pool(jnp.asarray(x), (4, 4)))
  starts, ends = [0, 3, 7, 10], [4, 7, 11, 14]  # floor(i*14/4), ceil((i+1)*14/4)
  for i in range(4):
    for j in range(4):
      expected = x[0, starts[i] : ends[i], starts[j] : ends[j]].mean(axis=(0, 1))
      np.testing.assert_allclose(got[0, i, j], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "shape,window,stride",
    [
        ((2, 14, 14, 8), (5, 5), 3),  # the auxiliary heads' pool at 224x224
        ((1, 7, 9, 3), (3, 4), 2),  # uneven sizes and a non-square window
        ((3, 2, 3, 5), (2, 3), 3),  # small demo inputs: the window is the whole map
    ],
)
def test_valid_avg_pool_matches_flax_avg_pool_and_its_gradient(shape, window, stride):
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  plain = lambda x_: nn.avg_pool(x_, window, strides=(stride, stride), padding="VALID")
  ours = lambda x_: valid_avg_pool(x_, window, stride)
  np.testing.assert_allclose(ours(x), plain(x), rtol=1e-6, atol=1e-6)
  upstream = jnp.asarray(np.random.default_rng(1).standard_normal(plain(x).shape), jnp.float32)
  np.testing.assert_allclose(
      jax.vjp(ours, x)[1](upstream)[0], jax.vjp(plain, x)[1](upstream)[0], rtol=1e-6, atol=1e-6
  )


def test_valid_avg_pool_rejects_a_window_larger_than_the_map():
  with pytest.raises(ValueError, match="5x5 pool needs at least"):
    valid_avg_pool(jnp.zeros((1, 4, 4, 2)), (5, 5), 3)


def test_valid_avg_pool_keeps_bfloat16_close_to_the_float32_average():
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 14, 14, 8)), jnp.bfloat16)
  got = valid_avg_pool(x, (5, 5), 3)
  assert got.dtype == jnp.bfloat16
  expected = nn.avg_pool(x.astype(jnp.float32), (5, 5), strides=(3, 3), padding="VALID")
  # Only the final rounding to bfloat16 (8 bits of mantissa) separates the two.
  np.testing.assert_allclose(np.asarray(got, np.float32), expected, rtol=2**-8, atol=1e-6)
