"""TrainState: everything a run needs to continue, as one pytree that orbax saves whole."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: optax.OptState
  # Polyak average of the parameters (paper section 6), used for the final model.
  ema_params: Any
  # The BatchNorm statistics that go with ema_params: their Polyak average (as TF's Inception
  # training averaged tf.moving_average_variables() beside the weights), or a copy of
  # batch_stats with config.ema_batch_stats=False. Empty for the LRN (`paper`) variant.
  ema_batch_stats: Any

  @property
  def variables(self) -> dict[str, Any]:
    return {"params": self.params, "batch_stats": self.batch_stats}

  @property
  def ema_variables(self) -> dict[str, Any]:
    return {"params": self.ema_params, "batch_stats": self.ema_batch_stats}


def polyak_update(ema_params: Any, params: Any, decay: float | jax.Array) -> Any:
  """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """min(decay, (1 + step) / (10 + step)): TF's ExponentialMovingAverage with num_updates.

  Early on the average follows the parameters closely, so it is not dominated by the random
  initialisation in short runs (with decay 0.9999 that would take ~50k steps to fade).
  """
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def create_train_state(variables: dict[str, Any], tx: optax.GradientTransformation) -> TrainState:
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params),
      ema_batch_stats=jax.tree.map(jnp.copy, variables.get("batch_stats", {})),
  )
