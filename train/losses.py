"""Classification losses and accuracy counts, shared by the training step, the classification
task (train/tasks.py) and the evaluators."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy against integer labels, optionally smoothed."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 where the label is among the k highest logits, ties ranked as `lax.top_k` ranks
  them (the lower class index first).

  Counted per example (how many classes rank ahead of the label) rather than with
  `lax.top_k`: XLA's sharding propagation does not split a TopK along the batch, so on a
  mesh it all-gathered every device's logits to every device first (one more collective per
  step, [global batch, classes] floats each way). This form stays batch-sharded.
  """
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  lower_index = jnp.arange(logits.shape[-1]) < labels[:, None]
  ahead = (logits > label_logit) | ((logits == label_logit) & lower_index)
  return (jnp.sum(ahead, axis=-1) < k).astype(jnp.float32)


def total_loss(
    logits: jax.Array,
    aux_logits: tuple[jax.Array, ...],
    labels: jax.Array,
    aux_weight: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Main loss plus aux_weight x each auxiliary loss (paper section 5: weight 0.3)."""
  main = cross_entropy(logits, labels, label_smoothing).mean()
  parts = {"main_loss": main}
  loss = main
  for index, aux in enumerate(aux_logits, start=1):
    aux_loss = cross_entropy(aux, labels, label_smoothing).mean()
    parts[f"aux{index}_loss"] = aux_loss
    loss = loss + aux_weight * aux_loss
  return loss, parts


def has_top5(logits: jax.Array) -> bool:
  """Top-5 means something only with more than 5 classes (with 5 or fewer it is always 1)."""
  return logits.shape[-1] > 5
