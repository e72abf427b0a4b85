"""The optimizer: SGD with momentum, Caffe's bias treatment, weight decay on weights only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax


def is_weight(path: tuple[Any, ...], _: Any) -> bool:
  """Conv and dense kernels; biases and BatchNorm scale/offset are not weights."""
  return getattr(path[-1], "key", None) == "kernel"


def weight_mask(params: Any) -> Any:
  return jax.tree_util.tree_map_with_path(is_weight, params)


def bias_mask(params: Any) -> Any:
  return jax.tree_util.tree_map_with_path(lambda path, leaf: not is_weight(path, leaf), params)


def create_optimizer(
    config: ml_collections.ConfigDict, learning_rate_fn: Callable[[Any], Any]
) -> optax.GradientTransformation:
  """Caffe's solver semantics (bvlc_googlenet `train_val.prototxt`): weight decay 2e-4 on
  weights only (decay_mult 0 on biases), biases at twice the learning rate (lr_mult 2), then
  momentum SGD. Scaling bias gradients before momentum equals scaling their step, SGD being
  linear in the gradient.
  """
  chain = []
  if config.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.weight_decay > 0:
    chain.append(optax.add_decayed_weights(config.weight_decay, mask=weight_mask))
  if config.bias_lr_multiplier != 1.0:
    chain.append(optax.masked(optax.scale(config.bias_lr_multiplier), bias_mask))
  chain.append(optax.sgd(learning_rate_fn, momentum=config.momentum, nesterov=config.nesterov))
  return optax.chain(*chain)
