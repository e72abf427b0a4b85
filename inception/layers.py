"""Building blocks of GoogLeNet: conv(+BN)+ReLU, Caffe-style LRN, and Caffe-rounded pooling.

Flax has neither a local response normalisation layer nor Caffe's "ceil" pooling arithmetic,
and both are needed to reproduce the BVLC reference build (docs/paper_notes.md, "Local response normalisation").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kernels import conv1x1 as conv_lib
from kernels.batch_norm_relu import BatchNormReLU
from kernels.lrn import local_response_norm
from kernels.max_pool import max_pool_2d

Dtype = Any
Initializer = Callable[..., jax.Array]

# Caffe's "xavier" filler draws from uniform(+-sqrt(3 / fan_in)), i.e. variance 1 / fan_in
# (BVLC caffe/include/caffe/filler.hpp, FillerParameter_VarianceNorm_FAN_IN default).
CAFFE_XAVIER = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
# torchvision's GoogLeNet draws every conv/linear weight from N(0, 0.01) truncated at +-2
# absolute, which is 200 standard deviations: a plain normal is the same distribution.
TORCHVISION_NORMAL = nn.initializers.normal(0.01)
# He et al. 2015 for ReLU networks; the usual choice when BatchNorm follows every conv.
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")

KERNEL_INITS = {
    "caffe_xavier": CAFFE_XAVIER,
    "torchvision": TORCHVISION_NORMAL,
    "he_normal": HE_NORMAL,
}


def kernel_init_by_name(name: str) -> Initializer:
  try:
    return KERNEL_INITS[name]
  except KeyError:
    raise ValueError(
        f"Unknown kernel_init {name!r}; choose one of {sorted(KERNEL_INITS)}."
    ) from None


class ConvBlock(nn.Module):
  """Convolution followed by optional BatchNorm and ReLU.

  With `batch_norm=True` the conv has no bias (BN's offset replaces it), as in torchvision's
  BasicConv2d. Padding is explicit (symmetric `padding` pixels) because Caffe and torchvision
  pad conv1 by 3 on both sides, which 'SAME' does not (it pads 2 before, 3 after);
  `same_padding=True` uses TensorFlow's 'SAME' instead, as TF-slim's layers do.
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  batch_norm: bool = False
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3
  kernel_init: Initializer = CAFFE_XAVIER
  bias_init_value: float = 0.2
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernels: str = "auto"
  same_padding: bool = False
  bn_scale: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    x = nn.Conv(
        self.features,
        (self.kernel_size, self.kernel_size),
        strides=(self.stride, self.stride),
        padding="SAME" if self.same_padding else [(self.padding, self.padding)] * 2,
        use_bias=not self.batch_norm,
        kernel_init=self.kernel_init,
        bias_init=nn.initializers.constant(self.bias_init_value),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        # Same parameters and values as lax's; 1x1 convs as matmuls on CPU (kernels/conv1x1.py).
        conv_general_dilated=conv_lib.for_kernels(self.kernels),
        name="conv",
    )(x)
    if self.batch_norm:
      # nn.BatchNorm + nn.relu with the same variables and a two-pass gradient (batch_norm.py).
      return BatchNormReLU(
          use_running_average=not train,
          momentum=self.bn_momentum,
          epsilon=self.bn_epsilon,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          use_scale=self.bn_scale,
          name="bn",
      )(x)
    return nn.relu(x)


class LocalResponseNorm(nn.Module):
  """Caffe's across-channel LRN (AlexNet): x / (k + alpha / n * sum_{n neighbours} x^2) ** beta.

  Caffe divides alpha by the window size n, unlike TensorFlow's `local_response_normalization`
  (docs/paper_notes.md, "Local response normalisation"). The channel window is centred and zero-padded at both ends.
  """

  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.size % 2 != 1:
      raise ValueError(f"LRN size must be odd to centre the window, got {self.size}.")
    # Computed in float32 with a hand-written gradient (kernels/lrn.py).
    return local_response_norm(x, self.size, self.alpha, self.beta, self.k).astype(x.dtype)


def ceil_pool_output_size(size: int, window: int, stride: int, pad: int = 0) -> int:
  """Pooled size with Caffe's (and torch's ceil_mode) rounding.

  Caffe rounds up, then drops the last window if it would start inside the right padding
  (caffe/src/caffe/layers/pooling_layer.cpp); torch's ceil_mode uses the same rule.
  """
  if size + 2 * pad < window:
    # Small inputs (32x32 demos) can shrink a map below the window; pool what is there.
    return 1
  out = math.ceil((size + 2 * pad - window) / stride) + 1
  if pad > 0 and (out - 1) * stride >= size + pad:
    out -= 1
  return out


def _ceil_padding(size: int, window: int, stride: int, pad: int) -> tuple[int, int]:
  out = ceil_pool_output_size(size, window, stride, pad)
  return pad, max(0, (out - 1) * stride + window - size - pad)


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
  """TensorFlow's 'SAME': ceil(size / stride) outputs, the odd padding pixel after.

  Equal to Caffe's ceil rounding for GoogLeNet's pools on even maps (every map at 224), not on
  odd ones: 3x3/2 on 15 gives 8 outputs here and 7 with Caffe's rule.
  """
  out = -(-size // stride)
  total = max(0, (out - 1) * stride + window - size)
  return total // 2, total - total // 2


class CeilMaxPool(nn.Module):
  """Max pooling with Caffe's ceil rounding: pads the right/bottom with -inf as needed.

  For the stride-2 3x3 pools of GoogLeNet at 224x224 this gives 112->56->28->14->7 like Caffe.
  A module (not a function) so that its output shows up in captured intermediates, which the
  Table-1 report reads.
  """

  window: int
  stride: int
  pad: int = 0
  kernels: str = "auto"
  # TensorFlow's 'SAME' padding (TF-slim's pools) instead of Caffe's ceil rounding; `pad` unused.
  same_padding: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    height, width = x.shape[-3], x.shape[-2]
    window_h, window_w = min(self.window, height + 2 * self.pad), min(
        self.window, width + 2 * self.pad
    )
    if self.same_padding:
      padding = (
          same_padding(height, self.window, self.stride),
          same_padding(width, self.window, self.stride),
      )
      window_h, window_w = self.window, self.window
    else:
      padding = (
          _ceil_padding(height, window_h, self.stride, self.pad),
          _ceil_padding(width, window_w, self.stride, self.pad),
      )
    # Same values as nn.max_pool; the gradient avoids XLA:CPU's slow select_and_scatter.
    return max_pool_2d(
        x, (window_h, window_w), (self.stride, self.stride), padding, kernels=self.kernels
    )


def valid_avg_pool(x: jax.Array, window: Sequence[int], stride: int) -> jax.Array:
  """Average pool without padding (NHWC), as one matmul with a constant pooling matrix.

  Why a matmul: the auxiliary heads' 5x5/3 pool (14x14 -> 4x4) is 16 outputs per channel, and
  the gradient of `nn.avg_pool` is a padded, dilated reduce_window over the whole 14x14 map,
  about 3x slower on XLA:CPU than the matmul with the (16, 196) pooling matrix
  (benchmarks/README.md, "What made the difference", item 6). Same values up to float rounding.
  """
  height, width = x.shape[-3:-1]
  if window[0] > height or window[1] > width:
    raise ValueError(
        f"a {window[0]}x{window[1]} pool needs at least that input, got " f"{height}x{width}"
    )

  def axis_matrix(size: int, length: int) -> np.ndarray:
    starts = range(0, size - length + 1, stride)
    matrix = np.zeros((len(starts), size), np.float32)
    for row, start in enumerate(starts):
      matrix[row, start : start + length] = 1.0 / length
    return matrix

  rows, cols = axis_matrix(height, window[0]), axis_matrix(width, window[1])
  pooling = jnp.asarray(np.kron(rows, cols))  # (out_h * out_w, height * width)
  flat = x.reshape(*x.shape[:-3], height * width, x.shape[-1])
  # float32 weights and accumulation: 1/25 is not a bfloat16 number.
  pooled = jnp.einsum("oi,...ic->...oc", pooling, flat, preferred_element_type=jnp.float32)
  return pooled.astype(x.dtype).reshape(*x.shape[:-3], rows.shape[0], cols.shape[0], x.shape[-1])


def adaptive_avg_pool(x: jax.Array, output_size: Sequence[int]) -> jax.Array:
  """torch's adaptive_avg_pool2d on NHWC: bin i spans [floor(i*H/o), ceil((i+1)*H/o)).

  Used by the torchvision layout's auxiliary heads; bins may overlap (14 -> 4 gives windows of
  4 starting at 0, 3, 7, 10), which a strided pool cannot express.
  """

  def pool_axis(values: jax.Array, axis: int, out: int) -> jax.Array:
    size = values.shape[axis]
    bins = []
    for i in range(out):
      start, end = (i * size) // out, -((-(i + 1) * size) // out)
      bins.append(
          jnp.mean(jax.lax.slice_in_dim(values, start, end, axis=axis), axis=axis, keepdims=True)
      )
    return jnp.concatenate(bins, axis=axis)

  out_h, out_w = output_size
  return pool_axis(pool_axis(x, x.ndim - 3, out_h), x.ndim - 2, out_w)
