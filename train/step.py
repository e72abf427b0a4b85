"""The jit-compiled training and evaluation steps (pure functions of state and batch, and of
the dropout key for training).

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

from train import tasks
from train.losses import cross_entropy, has_top5, topk_correct
from train.state import TrainState, ema_decay_at, polyak_update

Batch = dict[str, jax.Array]


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    learning_rate_fn: Callable[[jax.Array], jax.Array],
    config: ml_collections.ConfigDict,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
  """The step of config.task (train/tasks.py): its loss and metrics, then the update.

  The dropout key is an argument, not a constant of the program, so runs that differ only in
  their seed (an ensemble's members, R-CNN's classifiers) compile one program and share it
  through JAX's persistent compilation cache.
  """
  task = tasks.get_task(config.task)

  def train_step(state: TrainState, batch: Batch, dropout_rng: jax.Array):
    # Folding in the step makes dropout a function of the step alone, so a resumed run
    # draws exactly what the uninterrupted run would have.
    rng = jax.random.fold_in(dropout_rng, state.step)

    def loss_fn(params):
      output, updates = model.apply(
          {"params": params, "batch_stats": state.batch_stats},
          batch["image"],
          train=True,
          rngs={"dropout": rng},
          mutable=["batch_stats"],
      )
      loss, task_metrics = task.loss(output, batch, config)
      return loss, (task_metrics, updates)

    (loss, (task_metrics, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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
        **task_metrics,
        "learning_rate": learning_rate_fn(state.step),
        "grad_norm": optax.tree.norm(grads),
    }
    return new_state, metrics

  return train_step


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
