"""Max pooling whose gradient is cheap on CPU: the forward is XLA's reduce_window (a max of
shifted slices for stride-1 pools), the backward compares strided slices of the input with
the pooled output.

Why: `jax.grad` of `lax.reduce_window(max)` is XLA's select_and_scatter, which XLA:CPU runs
many times slower than the forward pass (measurements: benchmarks/README.md ("What made the difference"), items 2 and
7). This VJP reads each window as `window_h * window_w` strided slices of the -inf-padded
input and stores, per output, the row-major offset of the *first* position whose value
equals the window's max (uint8). Strided pools scatter the output gradient back by stride
residue ("planes": one shifted sum per residue of the stride, interleaved by a reshape);
stride-1 pools gather it per input instead: two loop fusions.

Tie semantics (documented and tested): when several positions of a window hold the max, the
whole gradient of that window goes to the first of them in row-major order (top-left first),
exactly what XLA's select_and_scatter does with the `ge` select that JAX uses for max
pooling. Gradients are therefore bit-identical to `jax.grad` of the plain op whenever the
per-input sums of window gradients are exact (e.g. non-overlapping windows); with overlapping
windows the up-to-4 (stride 2) or 9 (stride 1) terms reaching one input may be added in a
different order, a float32 rounding difference. Windows whose max is NaN pass no gradient
(NaN equals nothing). The padding is -inf as in the forward, so in a window whose real values
are all -inf a padding position may come first and its gradient is dropped, again exactly
as select_and_scatter does.

The custom VJP is used only in programs lowered for CPU (`kernels='auto'`, see
kernels/select.py): GPU and TPU compilers have fast native select_and_scatter kernels, and
this formulation has not been timed there.
"""

from __future__ import annotations

from collections.abc import Sequence
import functools

import jax
from jax import lax
import jax.numpy as jnp

from kernels import select as kernels_lib

Padding = tuple[tuple[int, int], tuple[int, int]]


def max_pool_2d_plain(
    x: jax.Array, window: tuple[int, int], strides: tuple[int, int], padding: Padding
) -> jax.Array:
  """Max pool of an NHWC array with explicit (-inf) padding; jax.grad of this is the reference."""
  # A Python -inf (not an array) lets lax recognise the max monoid and use reduce_window_max,
  # whose gradient is select_and_scatter.
  return lax.reduce_window(
      x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *padding, (0, 0))
  )


def max_pool_2d(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    padding: Padding,
    *,
    kernels: str = "auto",
) -> jax.Array:
  """NHWC max pool, same values as `max_pool_2d_plain`, with the cheap backward on CPU.

  `kernels` picks the formulation (kernels/select.py): 'auto' uses the custom VJP in
  programs lowered for CPU and XLA's select_and_scatter gradient elsewhere.
  Leading batch dimensions beyond one are flattened into the batch (vmap-free shapes such as
  [devices, batch, H, W, C] work); the pooled dims are always the last three but one.
  """
  window, strides = tuple(int(w) for w in window), tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if x.ndim != 4:
    lead = x.shape[:-3]
    pooled = max_pool_2d(x.reshape((-1,) + x.shape[-3:]), window, strides, padding, kernels=kernels)
    return pooled.reshape(lead + pooled.shape[1:])
  return kernels_lib.select(
      kernels,
      lambda v: _max_pool_first_max_vjp(v, window, strides, padding),
      lambda v: max_pool_2d_plain(v, window, strides, padding),
      x,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_first_max_vjp(x, window, strides, padding):
  return _pool_forward(x, window, strides, padding)


def _forward(x, window, strides, padding):
  y = _pool_forward(x, window, strides, padding)
  return y, (x, y)


def _pool_forward(x, window, strides, padding):
  if strides == (1, 1):
    # Stride-1 pools (one per inception module) as the max of kh * kw shifted slices,
    # computed once on their own (`_computed_once`; fused into their consumers they would
    # recompute the BatchNorm+ReLU producing x for every slice). Strided pools keep
    # reduce_window, which stays faster for them (benchmarks/README.md, item 7).
    return _computed_once(lambda v: _max_of_slices(v, window, padding), x)
  return max_pool_2d_plain(x, window, strides, padding)


def _max_of_slices(x, window, padding):
  """Stride-1 max pool as a maximum over shifted slices of the -inf-padded input."""
  kh, kw = window
  padded = _pad_with_neg_inf(x, padding)
  out_size = (padded.shape[1] - kh + 1, padded.shape[2] - kw + 1)
  pooled = None
  for t in range(kh * kw):
    values = _window_offset_values(padded, divmod(t, kw), (1, 1), out_size)
    pooled = values if pooled is None else jnp.maximum(pooled, values)
  return pooled


def _pad_with_neg_inf(x, padding):
  (pt, pb), (pl, pr) = padding
  return lax.pad(x, jnp.array(-jnp.inf, x.dtype), ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))


def _window_offset_values(padded, offset, strides, out_size):
  """[N, OH, OW, C]: the padded input at window offset (di, dj) of every output's window."""
  (di, dj), (sh, sw), (oh, ow) = offset, strides, out_size
  n, c = padded.shape[0], padded.shape[-1]
  return lax.slice(
      padded, (0, di, dj, 0), (n, di + sh * (oh - 1) + 1, dj + sw * (ow - 1) + 1, c), (1, sh, sw, 1)
  )


def _shift(a: jax.Array, axis: int, by: int, length: int) -> jax.Array:
  """b[i] = a[i - by] for i in [0, length) along `axis`, zero where a has no element."""
  config = [(0, 0, 0)] * a.ndim
  config[axis] = (by, length - a.shape[axis] - by, 0)
  return lax.pad(a, jnp.zeros((), a.dtype), config)


def _backward(window, strides, padding, residuals, g):
  x, y = residuals
  if strides == (1, 1):
    # Computed once on its own (a conditional, see `_computed_once`), the gather stays one
    # loop fusion. Outside, XLA:CPU put the sum of its nine terms into the YNNPACK fusion of
    # the module's 1x1-conv input gradients, which then needed all nine terms written out.
    # The strided pools' planes gained nothing on their own, so they stay out
    # (benchmarks/README.md, item 2).
    return (_computed_once(lambda *a: _backward_stride_one(*a, window, padding), x, y, g),)
  return (_backward_by_stride_residue(x, y, g, window, strides, padding),)


def _first_max_offsets(x, y, window, strides, padding):
  """[N, OH, OW, C]: the row-major window offset of each window's first max.

  Offsets run from 0 to kh * kw - 1; kh * kw marks a window without a max (a NaN window).
  The padding is -inf, as in the forward: in a window whose real values are all -inf, a
  padding position can come first and take the gradient, which is then dropped, exactly as
  XLA's select_and_scatter does.
  """
  kh, kw = window
  padded = _pad_with_neg_inf(x, padding)
  dtype = _offset_dtype(window)
  offsets = jnp.full(y.shape, kh * kw, dtype)
  for t in reversed(range(kh * kw)):  # the lowest matching offset is written last and wins
    values = _window_offset_values(padded, divmod(t, kw), strides, y.shape[1:3])
    offsets = jnp.where(values == y, jnp.asarray(t, dtype), offsets)
  return offsets


def _computed_once(compute, *operands):
  """compute(*operands), kept out of its consumers' fusions.

  XLA:CPU fuses cheap element-wise producers into every consumer, so the offset map, and
  the BatchNorm+ReLU that produced the pool's input, were recomputed inside each window
  slice of the pool backward, several times the cost of the backward alone.
  `lax.optimization_barrier` does not stop that (XLA:CPU drops it before fusion);
  a conditional's branches are separate computations, which fusion does not cross. Both
  branches compute the same thing; the predicate only has to be unknown at compile time, so
  that XLA keeps the conditional. It is a constant hidden from constant folding by an
  optimization barrier, not a value read from the data: under a sharded jit a scalar read
  from a batch-sharded operand is an all-reduce, which put collectives inside these
  conditionals; on several processes (gloo) those were matched out of order with the
  gradient all-reduces ("Received data size doesn't match expected size") and the run
  aborted (3 of 3 tries; 2 of 2 ran through with XLA's pool instead). The barrier makes no
  collective and costs nothing. (It replaced a one-trip while loop, which needed its result
  buffer zero-filled first; timings in benchmarks/README.md, items 2 and 7.) The stride-1
  backward as a whole runs the same way, for the reason given in `_backward`.
  """
  opaque_false = lax.optimization_barrier(jnp.int32(0)) != 0
  return lax.cond(opaque_false, compute, compute, *operands)


def _offset_dtype(window):
  return jnp.uint8 if window[0] * window[1] <= 255 else jnp.int32


def _backward_stride_one(x, y, g, window, padding):
  """Stride-1 pools (each inception module's 3x3/1): two loop fusions, no scatter.

  The first pass stores, per output, which window offset holds its first max; the second
  gathers, for each input, the gradients of the outputs whose first max it is. Both are
  element-wise over shifted slices, which XLA fuses into one loop each (faster than the
  residue-plane scatter below on GoogLeNet's 28x28 and 14x14 maps).
  """
  (kh, kw), ((pt, pb), (pl, pr)) = window, padding
  n, h, w, c = x.shape
  oh, ow = y.shape[1:3]
  # Output o's window covers padded input rows o .. o + kh - 1. Pad the output-resolution
  # arrays by kh - 1 in front so that one slice per offset lines each input up with the
  # output whose window holds it at that offset.
  config = ((0, 0, 0), (kh - 1, h + pt + pb - oh, 0), (kw - 1, w + pl + pr - ow, 0), (0, 0, 0))
  g_padded = lax.pad(g, jnp.zeros((), g.dtype), config)
  # Padded inside the computation, the pad joins the offsets' loop fusion instead of being a
  # pass of its own.
  no_window = jnp.asarray(kh * kw, _offset_dtype(window))
  offsets_padded = _computed_once(
      lambda a, b: lax.pad(_first_max_offsets(a, b, window, (1, 1), padding), no_window, config),
      x,
      y,
  )
  dx = None
  for t in range(kh * kw):
    di, dj = divmod(t, kw)
    start = (0, kh - 1 - di + pt, kw - 1 - dj + pl, 0)
    limit = (n, start[1] + h, start[2] + w, c)
    term = jnp.where(
        lax.slice(offsets_padded, start, limit) == t,
        lax.slice(g_padded, start, limit),
        jnp.zeros((), g.dtype),
    )
    dx = term if dx is None else dx + term
  return dx


def _backward_by_stride_residue(x, y, g, window, strides, padding):
  """Strided pools: first-max offsets, then one shifted sum per stride residue."""
  n, h, w, c = x.shape
  (pt, pb), (pl, pr) = padding
  (kh, kw), (sh, sw) = window, strides

  # First max in row-major window order gets the window's gradient (select_and_scatter `ge`).
  offsets = _computed_once(lambda a, b: _first_max_offsets(a, b, window, strides, padding), x, y)
  zero = jnp.zeros((), g.dtype)
  contributions = [jnp.where(offsets == t, g, zero) for t in range(kh * kw)]

  # Padded input row r = sh * i + a receives from window offsets di = a + sh * m of output
  # row i - m; likewise for columns. Build one "plane" per residue (a, b), then interleave.
  planes_h, planes_w = -(-(h + pt + pb) // sh), -(-(w + pl + pr) // sw)
  rows = []
  for a in range(sh):
    columns = []
    for b in range(sw):
      total = None
      for mi in range(-(-(kh - a) // sh)):
        for mj in range(-(-(kw - b) // sw)):
          term = contributions[(a + sh * mi) * kw + (b + sw * mj)]
          term = _shift(_shift(term, 1, mi, planes_h), 2, mj, planes_w)
          total = term if total is None else total + term
      if total is None:  # window smaller than stride: these rows are in no window
        total = jnp.zeros((n, planes_h, planes_w, c), g.dtype)
      columns.append(total)
    rows.append(columns[0][:, :, :, None] if sw == 1 else jnp.stack(columns, axis=3))
  grid = rows[0][:, :, None] if sh == 1 else jnp.stack(rows, axis=2)
  dx_padded = grid.reshape(n, planes_h * sh, planes_w * sw, c)
  return dx_padded[:, pt : pt + h, pl : pl + w]


_max_pool_first_max_vjp.defvjp(_forward, _backward)
