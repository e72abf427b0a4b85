"""A drop-in `conv_general_dilated` for `nn.Conv` that is faster to train on CPU.

On XLA:CPU a 1x1 convolution (two thirds of GoogLeNet's convolutions) runs several times
faster, forward and kernel gradient alike, as a plain [N*H*W, Cin] x [Cin, Cout] matmul than
as a convolution (XLA computes the kernel gradient as a convolution contracting the batch,
plus two transposed copies of the operands; measurements: benchmarks/README.md, "What made
the difference", item 3). This is an exact reformulation (the same sums, up to float rounding order), used only in
programs lowered for CPU (`kernels='auto'`, see kernels/select.py): GPU and TPU convolution
kernels are already fast in all three directions.

KxK convolutions stay XLA's own. (An im2col kernel gradient used to win here against the
YNNPACK convolutions; with those switched off for training, see `train/compiler_options.py`,
XLA's Eigen convolutions are faster in all three directions and the im2col path was removed.)

Anything else (strides, padding, dilation, groups, other layouts) goes to
`lax.conv_general_dilated` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp

from kernels import select as kernels_lib

_NHWC_HWIO = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def for_kernels(kernels: str) -> Callable[..., jax.Array]:
  """`conv_general_dilated` bound to a `kernels` choice, for nn.Conv's argument of that name."""
  return functools.partial(conv_general_dilated, kernels=kernels_lib.check_kernels(kernels))


def _is_nhwc_hwio(dimension_numbers: Any) -> bool:
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(map(tuple, dimension_numbers)) == _NHWC_HWIO
  return tuple(dimension_numbers or ()) == ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    *,
    kernels: str = "auto",
) -> jax.Array:
  """Same signature and values as `lax.conv_general_dilated`; see the module docstring."""
  pointwise = (
      kernels != "xla"
      and lhs.ndim == 4
      and _is_nhwc_hwio(dimension_numbers)
      and rhs.shape[:2] == (1, 1)
      and tuple(window_strides) == (1, 1)
      and not isinstance(padding, str)
      and _no_padding(padding)
      and feature_group_count == 1
      and batch_group_count == 1
      and all(d == 1 for d in (lhs_dilation or (1, 1)))
      and all(d == 1 for d in (rhs_dilation or (1, 1)))
      and preferred_element_type is None
      and lhs.dtype == rhs.dtype
  )
  xla_conv = functools.partial(
      lax.conv_general_dilated,
      window_strides=window_strides,
      padding=padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
  )
  if not pointwise:
    return xla_conv(lhs, rhs)
  return kernels_lib.select(
      kernels, functools.partial(_pointwise, precision=precision), xla_conv, lhs, rhs
  )


def _no_padding(padding: Any) -> bool:
  return all(int(lo) == 0 and int(hi) == 0 for lo, hi in padding)


def _pointwise(x: jax.Array, kernel: jax.Array, precision: Any) -> jax.Array:
  n, h, w, c = x.shape
  y = jnp.matmul(x.reshape(n * h * w, c), kernel.reshape(c, kernel.shape[-1]), precision=precision)
  return y.reshape(n, h, w, kernel.shape[-1])
