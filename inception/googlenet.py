"""GoogLeNet (Inception v1) and its inception module, auxiliary heads and variants.

Layer names follow the BVLC Caffe `bvlc_googlenet` prototxt (`conv1`, `conv2_reduce`,
`inception_4a/3x3_reduce`, ...) so a parameter tree reads like Table 1 of the paper.

`GoogLeNet.__call__(images, train=...)` returns one `GoogLeNetOutput`:
  * `logits`: float32 `[batch, num_classes]`;
  * `aux_logits`: the two auxiliary heads' logits (on 4a, then 4d) when training with
    `aux_heads=True`, else `()`;
  * `features`: the pooled 1024-d (times width) float32 features before dropout and the
    classifier, for feature extraction and linear probes;
  * `feature_map`: the map those features average (inception_5b's output), for heads that
    need positions (detection/multibox_model.py).
Under `jax.jit` an output nobody reads costs nothing. The auxiliary heads' parameters are
always created at init (when enabled), so checkpoints are complete whichever mode the model
was initialised in.

Small inputs: the stem is the same at every resolution. Pools use Caffe's ceil rounding with
windows clipped to the map, so a 32x32 input runs 16->8->4->2->1 and a 64x64 input 32->16->8->4->2.
The final pool is a global average (Caffe's 7x7/1 pool is exactly that at 224). The paper's
auxiliary pool (5x5/3, no padding, 14x14 -> 4x4) clips its window to the map when the map is
smaller than 5, so below ~80 px the aux heads see a 1x1 grid; their fc layer's input size follows
the grid, hence aux weights are tied to the input resolution used at init.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from inception import paper
from inception.layers import (
    CeilMaxPool,
    ConvBlock,
    LocalResponseNorm,
    adaptive_avg_pool,
    kernel_init_by_name,
    valid_avg_pool,
)

Dtype = Any


def scale_channels(channels: int, width: float) -> int:
  """Width multiplier applied to one layer; never below one channel."""
  return max(1, int(round(channels * width)))


class InceptionModule(nn.Module):
  """Four parallel branches concatenated in the paper's order (Figure 2b).

  1x1 | 1x1 reduce -> 3x3 | 1x1 reduce -> 5x5 | 3x3/1 max pool -> 1x1 pool projection.
  `conv5x5_kernel=3` reproduces torchvision's layout, whose "5x5" branch uses 3x3 kernels
  (pytorch/vision issue 906); the branch keeps its paper name so weights map one to one.
  """

  channels: paper.InceptionChannels
  conv: Callable[..., ConvBlock]
  conv5x5_kernel: int = 5
  pool: Callable[..., CeilMaxPool] = CeilMaxPool

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    c = self.channels
    branch1 = self.conv(c.conv1x1, 1, name="1x1")(x, train=train)
    branch2 = self.conv(c.reduce3x3, 1, name="3x3_reduce")(x, train=train)
    branch2 = self.conv(c.conv3x3, 3, padding=1, name="3x3")(branch2, train=train)
    branch3 = self.conv(c.reduce5x5, 1, name="5x5_reduce")(x, train=train)
    branch3 = self.conv(
        c.conv5x5, self.conv5x5_kernel, padding=self.conv5x5_kernel // 2, name="5x5"
    )(branch3, train=train)
    branch4 = self.pool(3, 1, pad=1, name="pool")(x)
    branch4 = self.conv(c.pool_proj, 1, name="pool_proj")(branch4, train=train)
    return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


@flax.struct.dataclass
class GoogLeNetOutput:
  logits: jax.Array
  aux_logits: tuple[jax.Array, ...]
  features: jax.Array
  # inception_5b's output before pooling, [batch, H/32, W/32, 1024 x width] in the compute
  # dtype: where the objects are, for heads that need it (MultiBox).
  feature_map: jax.Array | None = None


class AuxHead(nn.Module):
  """Auxiliary classifier of section 5, used only while training.

  avg pool -> 1x1 conv (128) + ReLU -> fc (1024) + ReLU -> dropout (70%) -> linear.
  `pool='caffe'` is the paper's 5x5/3 valid pool (14x14 -> 4x4); `pool='adaptive'` is
  torchvision's adaptive average pool to 4x4, whose bins differ (windows of 4 at 0, 3, 7, 10).
  """

  num_classes: int
  conv: Callable[..., ConvBlock]
  conv_channels: int
  hidden_units: int
  dropout_rate: float
  pool: str
  kernel_init: Callable[..., jax.Array]
  hidden_bias_init_value: float
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if self.pool == "caffe":
      x = valid_avg_pool(x, (min(5, x.shape[-3]), min(5, x.shape[-2])), stride=3)
    else:
      x = adaptive_avg_pool(x, (4, 4))
    x = self.conv(self.conv_channels, 1, name="conv")(x, train=train)
    x = x.reshape(x.shape[0], -1)
    dense = functools.partial(
        nn.Dense, kernel_init=self.kernel_init, dtype=self.dtype, param_dtype=self.param_dtype
    )
    x = dense(
        self.hidden_units,
        bias_init=nn.initializers.constant(self.hidden_bias_init_value),
        name="fc",
    )(x)
    x = nn.relu(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
    x = dense(self.num_classes, bias_init=nn.initializers.zeros, name="classifier")(x)
    return x.astype(jnp.float32)


class GoogLeNet(nn.Module):
  """GoogLeNet of Table 1; the defaults are the BVLC Caffe (`paper`) build.

  Build variants with `create_model` rather than setting fields by hand.
  """

  num_classes: int = 1000
  width: float = 1.0
  batch_norm: bool = False
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3
  # False: BatchNorm without a learned scale (TF-slim's inception_v1).
  bn_scale: bool = True
  lrn: bool = True
  conv5x5_kernel: int = 5
  pool4_window: int = 3
  aux_heads: bool = True
  aux_pool: str = "caffe"
  dropout_rate: float = 0.4
  aux_dropout_rate: float = 0.7
  kernel_init: str = "caffe_xavier"
  conv_bias_init: float = 0.2
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  # Op formulations: 'auto' picks per platform when lowered (kernels/select.py).
  kernels: str = "auto"
  # 'caffe': explicit symmetric conv padding and ceil-rounded pools (Caffe, torchvision);
  # 'same': TensorFlow's 'SAME' for every conv and pool (TF-slim). They differ at 224 only in
  # conv1 (pads 3+3 against 2+3); on odd-sized maps the stride-2 pools differ too.
  padding: str = "caffe"

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False) -> GoogLeNetOutput:
    kernel_init = kernel_init_by_name(self.kernel_init)
    conv = functools.partial(
        ConvBlock,
        batch_norm=self.batch_norm,
        bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon,
        kernel_init=kernel_init,
        bias_init_value=self.conv_bias_init,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernels=self.kernels,
        same_padding=self.padding == "same",
        bn_scale=self.bn_scale,
    )
    max_pool = functools.partial(
        CeilMaxPool, kernels=self.kernels, same_padding=self.padding == "same"
    )
    width = functools.partial(scale_channels, width=self.width)
    stem = paper.STEM_CHANNELS

    x = images.astype(self.dtype)
    x = conv(width(stem["conv1"]), 7, stride=2, padding=3, name="conv1")(x, train=train)
    x = max_pool(3, 2, name="pool1")(x)
    if self.lrn:  # Caffe normalises after pool1 and after conv2, before pool2.
      x = LocalResponseNorm(name="norm1")(x)
    x = conv(width(stem["conv2_reduce"]), 1, name="conv2_reduce")(x, train=train)
    x = conv(width(stem["conv2"]), 3, padding=1, name="conv2")(x, train=train)
    if self.lrn:
      x = LocalResponseNorm(name="norm2")(x)
    x = max_pool(3, 2, name="pool2")(x)

    def inception(tag: str, inputs: jax.Array) -> jax.Array:
      channels = paper.INCEPTION_CHANNELS[tag]
      scaled = paper.InceptionChannels(*(width(c) for c in dataclasses.astuple(channels)))
      module = InceptionModule(scaled, conv, self.conv5x5_kernel, max_pool, name=f"inception_{tag}")
      return module(inputs, train=train)

    aux_logits = []
    run_aux = self.aux_heads and (train or self.is_initializing())

    def aux_head(tag: str, inputs: jax.Array) -> None:
      head = AuxHead(
          num_classes=self.num_classes,
          conv=conv,
          conv_channels=width(paper.AUX_CONV_CHANNELS),
          hidden_units=width(paper.AUX_HIDDEN_UNITS),
          dropout_rate=self.aux_dropout_rate,
          pool=self.aux_pool,
          kernel_init=kernel_init,
          hidden_bias_init_value=self.conv_bias_init,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          name=f"aux_{tag}",
      )
      aux_logits.append(head(inputs, train=train))

    x = inception("3a", x)
    x = inception("3b", x)
    x = max_pool(3, 2, name="pool3")(x)
    x = inception("4a", x)
    if run_aux:
      aux_head("4a", x)
    x = inception("4b", x)
    x = inception("4c", x)
    x = inception("4d", x)
    if run_aux:
      aux_head("4d", x)
    x = inception("4e", x)
    x = max_pool(self.pool4_window, 2, name="pool4")(x)
    x = inception("5a", x)
    x = inception("5b", x)
    feature_map = x

    # Caffe's pool5 is 7x7/1 on a 7x7 map: a global average, which also serves other sizes.
    features = jnp.mean(x.astype(jnp.float32), axis=(-3, -2))
    self.sow("intermediates", "pool5", features)
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(features)
    logits = nn.Dense(
        self.num_classes,
        kernel_init=kernel_init,
        bias_init=nn.initializers.zeros,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="classifier",
    )(x)
    logits = logits.astype(jnp.float32)

    return GoogLeNetOutput(
        logits=logits,
        aux_logits=tuple(aux_logits) if train else (),
        features=features,
        feature_map=feature_map,
    )
