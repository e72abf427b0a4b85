"""Named GoogLeNet variants, selected by config rather than by copies of the model code."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from inception.googlenet import GoogLeNet
from kernels.select import check_kernels

VARIANTS: dict[str, dict[str, Any]] = {
    # BVLC Caffe `bvlc_googlenet`: the paper's topology with LRN, true 5x5 kernels, biases
    # initialised to 0.2 and the "xavier" filler (docs/paper_notes.md, "Caffe initialisation"). These are GoogLeNet's defaults.
    "paper": {},
    # BatchNorm after every conv (no conv bias), no LRN: the variant that trains fast today.
    "bn": dict(batch_norm=True, lrn=False, kernel_init="he_normal", conv_bias_init=0.0),
    # torchvision `googlenet`: BN with eps 1e-3 (torch momentum 0.1 = flax 0.9), 3x3 kernels in
    # the "5x5" branch, a 2x2/2 pool4, adaptive 4x4 aux pooling, dropout 0.2, N(0, 0.01) init.
    "torchvision": dict(
        batch_norm=True,
        lrn=False,
        bn_epsilon=1e-3,
        bn_momentum=0.9,
        conv5x5_kernel=3,
        pool4_window=2,
        aux_pool="adaptive",
        dropout_rate=0.2,
        kernel_init="torchvision",
        conv_bias_init=0.0,
    ),
    # TF-slim `inception_v1` (nets/inception_v1.py and its arg scope): torchvision's topology
    # with TensorFlow's 'SAME' padding (conv1 pads 2+3), BatchNorm without scale, decay 0.9997
    # and eps 1e-3, keep_prob 0.8, He ("variance_scaling") init. The published checkpoint has
    # 1001 classes (background at 0) and no aux heads.
    "slim": dict(
        batch_norm=True,
        lrn=False,
        bn_epsilon=1e-3,
        bn_momentum=0.9997,
        bn_scale=False,
        padding="same",
        conv5x5_kernel=3,
        pool4_window=2,
        aux_pool="adaptive",
        dropout_rate=0.2,
        kernel_init="he_normal",
        conv_bias_init=0.0,
    ),
}

_DTYPE_FIELDS = ("dtype", "param_dtype")
_MODULE_INTERNALS = ("parent", "name")


def model_fields() -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(GoogLeNet) if f.name not in _MODULE_INTERNALS)


def create_model(variant: str = "paper", **overrides: Any) -> GoogLeNet:
  """GoogLeNet of a named variant with some fields overridden (e.g. num_classes, width).

  Dtypes may be given as strings ('bfloat16'); a field GoogLeNet does not have is an error
  that names it, so a typo in a config cannot silently fall back to a default.
  """
  if variant not in VARIANTS:
    raise ValueError(f"Unknown model variant {variant!r}; choose one of {sorted(VARIANTS)}.")
  unknown = sorted(set(overrides) - set(model_fields()))
  if unknown:
    raise ValueError(
        f"Unknown GoogLeNet field(s) {unknown}; valid fields are {list(model_fields())}."
    )
  fields = {**VARIANTS[variant], **overrides}
  for key in _DTYPE_FIELDS:
    if isinstance(fields.get(key), str):
      fields[key] = jnp.dtype(fields[key])
  check_kernels(fields.get("kernels", "auto"))
  if fields.get("aux_pool", "caffe") not in ("caffe", "adaptive"):
    raise ValueError(f"aux_pool must be 'caffe' or 'adaptive', got {fields['aux_pool']!r}.")
  if fields.get("padding", "caffe") not in ("caffe", "same"):
    raise ValueError(f"padding must be 'caffe' or 'same', got {fields['padding']!r}.")
  return GoogLeNet(**fields)
