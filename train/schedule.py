"""Durations and the learning-rate schedule, in one vocabulary: steps, derived from epochs."""

from __future__ import annotations

import math

import jax.numpy as jnp
import ml_collections


def steps_per_epoch(num_train_examples: int, batch_size: int) -> float:
  """Fractional: a schedule in epochs must not drift by rounding on small datasets."""
  return num_train_examples / batch_size


def total_train_steps(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(
      1, math.ceil(config.num_epochs * steps_per_epoch(num_train_examples, config.batch_size))
  )


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """Linear scaling with the global batch size (Goyal et al. 2017)."""
  return config.base_learning_rate * config.batch_size / config.lr_reference_batch_size


def create_learning_rate_fn(config: ml_collections.ConfigDict, num_train_examples: int):
  """lr(step) = peak * warmup * decay_factor ** floor(epoch / decay_every_epochs).

  With the paper's settings this is lr(epoch) = 0.01 * 0.96 ** floor(epoch / 8) (section 6),
  a staircase by epoch, as Caffe's "step" policy with stepsize 320,000 iterations of 32 images.
  """
  per_epoch = steps_per_epoch(num_train_examples, config.batch_size)
  peak = peak_learning_rate(config)
  warmup_steps = config.warmup_epochs * per_epoch
  decay_factor, decay_every = config.lr_decay_factor, config.lr_decay_every_epochs

  def learning_rate(step):
    epoch = step / per_epoch
    decayed = peak * decay_factor ** jnp.floor(epoch / decay_every)
    if warmup_steps > 0:
      decayed = decayed * jnp.minimum(1.0, (step + 1) / warmup_steps)
    return decayed

  return learning_rate
