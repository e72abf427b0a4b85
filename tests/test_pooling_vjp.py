"""The CPU fast paths (custom max-pool VJP, matmul 1x1 convolutions) against jax.grad of
the plain XLA ops: same values, same gradients, including ties in max pooling."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception.layers import CeilMaxPool, _ceil_padding
from kernels import conv1x1 as fast_conv
from kernels import max_pool as pooling

# (height, width, window, stride, pad): GoogLeNet's 3x3/2 ceil pools (even and odd sizes), the
# inception modules' 3x3/1 pad 1, torchvision's 2x2/2 pool4 (with an odd size that drops a
# row), and a clipped window on a map smaller than the window.
POOL_CASES = [
    (12, 12, 3, 2, 0),
    (13, 9, 3, 2, 0),
    (7, 7, 3, 1, 1),
    (6, 5, 3, 1, 1),
    (8, 8, 2, 2, 0),
    (7, 9, 2, 2, 0),
    (2, 2, 2, 2, 0),
]


def _pool_args(h, w, window, stride, pad):
  window_h, window_w = min(window, h + 2 * pad), min(window, w + 2 * pad)
  padding = (_ceil_padding(h, window_h, stride, pad), _ceil_padding(w, window_w, stride, pad))
  return (window_h, window_w), (stride, stride), padding


def _tied_input(shape, seed, dtype=jnp.float32):
  # Values on a coarse grid: most windows hold their max two or more times.
  values = np.random.default_rng(seed).integers(-3, 4, size=shape)
  return jnp.asarray(values, dtype)


def _dyadic_cotangent(shape, seed, dtype=jnp.float32):
  # Multiples of 1/8 in [-4, 4]: sums of a few of them are exact in float32 and bfloat16, so
  # gradients that differ only in summation order still compare bit for bit.
  values = np.random.default_rng(seed).integers(-32, 33, size=shape) / 8
  return jnp.asarray(values, dtype)


def _pool_grads(x, g, window, strides, padding):
  plain = lambda v: pooling.max_pool_2d_plain(v, window, strides, padding)
  custom = lambda v: pooling._max_pool_first_max_vjp(v, window, strides, padding)
  y_ref, vjp_ref = jax.vjp(plain, x)
  y, vjp = jax.vjp(custom, x)
  return (y, vjp(g)[0]), (y_ref, vjp_ref(g)[0])


@pytest.mark.parametrize("h,w,window,stride,pad", POOL_CASES)
def test_max_pool_vjp_matches_select_and_scatter_with_ties(h, w, window, stride, pad):
  window, strides, padding = _pool_args(h, w, window, stride, pad)
  x = _tied_input((2, h, w, 3), seed=h * 31 + w)
  y_shape = pooling.max_pool_2d_plain(x, window, strides, padding).shape
  g = _dyadic_cotangent(y_shape, seed=1)
  (y, dx), (y_ref, dx_ref) = jax.jit(_pool_grads, static_argnums=(2, 3, 4))(
      x, g, window, strides, padding
  )
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
  np.testing.assert_array_equal(np.asarray(dx), np.asarray(dx_ref))


@pytest.mark.parametrize("stride", [1, 2])
def test_all_minus_inf_window_loses_its_gradient_to_the_padding_like_select_and_scatter(stride):
  # The top-left window holds padding (-inf) and real -inf values only; the padding comes
  # first in row-major order, so select_and_scatter drops that window's gradient.
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 5, 2)), jnp.float32)
  x = x.at[0, :2, :2, :].set(-jnp.inf)
  window, strides, padding = (3, 3), (stride, stride), ((1, 1), (1, 1))
  y_shape = pooling.max_pool_2d_plain(x, window, strides, padding).shape
  g = _dyadic_cotangent(y_shape, seed=2)
  (_, dx), (_, dx_ref) = _pool_grads(x, g, window, strides, padding)
  np.testing.assert_array_equal(np.asarray(dx), np.asarray(dx_ref))


def test_ties_go_to_the_first_max_in_row_major_order():
  # One 3x3/2 window full of equal values: the whole gradient lands on its top-left element,
  # as with XLA's select_and_scatter (`ge` select); splitting it would give 1/9 each.
  x = jnp.ones((1, 3, 3, 1))
  dx = jax.grad(
      lambda v: pooling._max_pool_first_max_vjp(v, (3, 3), (2, 2), ((0, 0), (0, 0))).sum()
  )(x)
  expected = np.zeros((1, 3, 3, 1), np.float32)
  expected[0, 0, 0, 0] = 1.0
  np.testing.assert_array_equal(np.asarray(dx), expected)
  # Overlapping windows: a tie between rows 0 and 2 of column 0 in a 5-row input. Window 0
  # (rows 0-2) sends its gradient to row 0; window 1 (rows 2-4) to row 2.
  x = jnp.asarray([5.0, 1.0, 5.0, 1.0, 1.0]).reshape(1, 5, 1, 1)
  g = jnp.asarray([1.0, 2.0]).reshape(1, 2, 1, 1)
  _, vjp = jax.vjp(
      lambda v: pooling._max_pool_first_max_vjp(v, (3, 1), (2, 1), ((0, 0), (0, 0))), x
  )
  np.testing.assert_array_equal(np.asarray(vjp(g)[0]).ravel(), [1.0, 0.0, 2.0, 0.0, 0.0])


@pytest.mark.parametrize("h,w,window,stride,pad", [POOL_CASES[1], POOL_CASES[3]])
def test_max_pool_vjp_random_data_allclose(h, w, window, stride, pad):
  # Distinct random values and random cotangents: overlapping windows add the same terms in
  # another order, so compare to float32 rounding.
  window, strides, padding = _pool_args(h, w, window, stride, pad)
  x = jax.random.normal(jax.random.key(0), (3, h, w, 4))
  g = jax.random.normal(
      jax.random.key(1), pooling.max_pool_2d_plain(x, window, strides, padding).shape
  )
  (y, dx), (y_ref, dx_ref) = _pool_grads(x, g, window, strides, padding)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
  np.testing.assert_allclose(np.asarray(dx), np.asarray(dx_ref), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("h,w,window,stride,pad", [POOL_CASES[0], POOL_CASES[2], POOL_CASES[5]])
def test_max_pool_vjp_bfloat16(h, w, window, stride, pad):
  window, strides, padding = _pool_args(h, w, window, stride, pad)
  x = _tied_input((2, h, w, 3), seed=5, dtype=jnp.bfloat16)
  g = _dyadic_cotangent(
      pooling.max_pool_2d_plain(x, window, strides, padding).shape, 2, jnp.bfloat16
  )
  (y, dx), (y_ref, dx_ref) = _pool_grads(x, g, window, strides, padding)
  assert dx.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
  np.testing.assert_array_equal(np.asarray(dx, np.float32), np.asarray(dx_ref, np.float32))


def test_ceil_max_pool_module_extra_batch_dims_and_grad():
  # [devices, batch, H, W, C] without vmap: leading dims are folded into the batch.
  x = _tied_input((2, 3, 9, 9, 2), seed=7)
  module = CeilMaxPool(3, 2, kernels="cpu")
  window, strides, padding = _pool_args(9, 9, 3, 2, 0)
  loss = lambda v: (module.apply({}, v) ** 2).sum()
  ref = lambda v: (nn.max_pool(v.reshape(6, 9, 9, 2), window, strides, padding) ** 2).sum()
  np.testing.assert_array_equal(
      np.asarray(jax.jit(jax.grad(loss))(x)), np.asarray(jax.grad(ref)(x))
  )


@pytest.mark.parametrize(
    "kernel,stride,pad,cin", [(1, 1, 0, 8), (3, 1, 1, 5), (7, 2, 3, 3), (3, 2, 0, 4)]
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_conv_fast_path_matches_lax_conv_and_grads(kernel, stride, pad, cin, dtype):
  x = jax.random.normal(jax.random.key(0), (2, 11, 10, cin), dtype)
  w = (jax.random.normal(jax.random.key(1), (kernel, kernel, cin, 6)) * 0.3).astype(dtype)
  args = ((stride, stride), [(pad, pad)] * 2)
  kwargs = dict(dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def loss(conv_fn, x_, w_):
    y = conv_fn(x_, w_, *args, **kwargs).astype(jnp.float32)
    return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=jnp.float32).reshape(y.shape)))

  got = jax.jit(jax.value_and_grad(lambda a, b: loss(fast_conv.for_kernels("cpu"), a, b), (0, 1)))(
      x, w
  )
  ref = jax.value_and_grad(lambda a, b: loss(jax.lax.conv_general_dilated, a, b), (0, 1))(x, w)
  tol = 1e-5 if dtype == jnp.float32 else 3e-2
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
    assert a.dtype == b.dtype
    scale = float(jnp.max(jnp.abs(b.astype(jnp.float32)))) + 1e-6
    np.testing.assert_allclose(
        np.asarray(a, np.float32) / scale, np.asarray(b, np.float32) / scale, atol=tol, rtol=0
    )


@pytest.mark.parametrize("h,w,window,stride,pad", [(7, 7, 3, 1, 1), (13, 9, 3, 2, 0)])
def test_a_nan_leaves_other_channels_and_images_gradients_exact(h, w, window, stride, pad):
  # A NaN in one window must not leak into the gradients of other windows, channels or
  # images (the first-max offsets mark a NaN window as having no max).
  x = np.array(_tied_input((2, h, w, 2), seed=11))
  x[0, 0, 0, 0] = np.nan
  x = jnp.asarray(x)
  window_hw, strides, padding = _pool_args(h, w, window, stride, pad)
  pooled = jax.eval_shape(lambda v: pooling.max_pool_2d_plain(v, window_hw, strides, padding), x)
  g = _dyadic_cotangent(pooled.shape, seed=12)
  (y, dx), (y_ref, dx_ref) = jax.jit(
      lambda x_, g_: _pool_grads(x_, g_, window_hw, strides, padding)
  )(x, g)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))  # NaN where the reference has it
  # Channel 1 and the second image never see the NaN: bit-identical to select_and_scatter.
  np.testing.assert_array_equal(np.asarray(dx[..., 1]), np.asarray(dx_ref[..., 1]))
  np.testing.assert_array_equal(np.asarray(dx[1]), np.asarray(dx_ref[1]))
  assert np.isfinite(np.asarray(dx)).all()


@pytest.mark.parametrize("h,w,window,stride,pad", [(7, 7, 3, 1, 1), (13, 9, 3, 2, 0)])
def test_second_derivatives_match_the_plain_pool(h, w, window, stride, pad):
  # Distinct values (no ties): second derivatives of a max are only defined away from ties.
  x = jnp.asarray(
      np.random.default_rng(13).permutation(2 * h * w * 2).reshape(2, h, w, 2) / 8.0, jnp.float32
  )
  window_hw, strides, padding = _pool_args(h, w, window, stride, pad)
  plain = lambda v: pooling.max_pool_2d_plain(v, window_hw, strides, padding)
  custom = lambda v: pooling._max_pool_first_max_vjp(v, window_hw, strides, padding)
  grad_norm = lambda pool: jax.grad(
      lambda v: jnp.sum(jax.grad(lambda u: jnp.sum(pool(u) ** 3))(v) ** 2)
  )
  np.testing.assert_allclose(jax.jit(grad_norm(custom))(x), jax.jit(grad_norm(plain))(x), rtol=1e-6)
