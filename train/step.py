"""The jit-compiled training and evaluation steps (pure functions of state and batch).

Both run under `jax.jit` on a device mesh: the batch arrives sharded over the 'data' axis and
the state replicated, so XLA inserts the gradient all-reduce and, for BatchNorm, computes
statistics over the global batch. Nothing here synchronises with the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from train.state import TrainState, ema_decay_at, polyak_update

Batch = dict[str, jax.Array]


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


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    learning_rate_fn: Callable[[jax.Array], jax.Array],
    config: ml_collections.ConfigDict,
    dropout_rng: jax.Array,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:

  def train_step(state: TrainState, batch: Batch):
    # Folding in the step makes dropout a function of the step alone, so a resumed run
    # draws exactly what the uninterrupted run would have.
    rng = jax.random.fold_in(dropout_rng, state.step)
    labels = batch["label"]

    def loss_fn(params):
      output, updates = model.apply(
          {"params": params, "batch_stats": state.batch_stats},
          batch["image"],
          train=True,
          rngs={"dropout": rng},
          mutable=["batch_stats"],
      )
      loss, parts = total_loss(
          output.logits, output.aux_logits, labels, config.aux_loss_weight, config.label_smoothing
      )
      return loss, (output.logits, parts, updates)

    (loss, (logits, parts, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates_tx, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates_tx)
    batch_stats = updates.get("batch_stats", state.batch_stats)
    decay = ema_decay_at(state.step, config.ema_decay)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        ema_params=polyak_update(state.ema_params, params, decay),
        ema_batch_stats=(
            polyak_update(state.ema_batch_stats, batch_stats, decay)
            if config.ema_batch_stats
            else batch_stats
        ),
    )
    metrics = {
        "loss": loss,
        **parts,
        "top1": topk_correct(logits, labels, 1).mean(),
        **({"top5": topk_correct(logits, labels, 5).mean()} if has_top5(logits) else {}),
        "learning_rate": learning_rate_fn(state.step),
        "grad_norm": optax.tree.norm(grads),
    }
    return new_state, metrics

  return train_step


def has_top5(logits: jax.Array) -> bool:
  """Top-5 means something only with more than 5 classes (with 5 or fewer it is always 1)."""
  return logits.shape[-1] > 5


def make_eval_step(model: nn.Module) -> Callable[[dict[str, Any], Batch], dict[str, jax.Array]]:
  """Sums over the real (mask True) examples of a padded batch; the caller divides by count."""

  def eval_step(variables: dict[str, Any], batch: Batch):
    logits = model.apply(variables, batch["image"], train=False).logits
    labels, mask = batch["label"], batch["mask"].astype(jnp.float32)
    sums = {
        "loss": jnp.sum(cross_entropy(logits, labels) * mask),
        "top1": jnp.sum(topk_correct(logits, labels, 1) * mask),
        "count": jnp.sum(mask),
        # Per-class example counts: the majority-class rate is the accuracy a model that
        # learned nothing reaches (75% background among R-CNN's regions, say).
        "label_counts": jnp.sum(jax.nn.one_hot(labels, logits.shape[-1]) * mask[:, None], 0),
    }
    if has_top5(logits):
      sums["top5"] = jnp.sum(topk_correct(logits, labels, 5) * mask)
    return sums

  return eval_step
