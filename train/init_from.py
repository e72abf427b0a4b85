"""Initialising a new run from an exported model or another run's workdir (fine-tuning)."""

from __future__ import annotations

from typing import Any

from absl import logging
from flax.traverse_util import flatten_dict, unflatten_dict
import jax
from jax.sharding import NamedSharding
import ml_collections
import numpy as np
import optax

from runtime import artifacts
from train.state import TrainState


def merge_variables(
    fresh: dict[str, Any], loaded: dict[str, Any], reinit: tuple[str, ...], collection: str
) -> dict[str, Any]:
  """Loaded values for every leaf of `fresh`, except subtrees named in `reinit`.

  A leaf missing from `loaded` or of another shape is an error naming it, so a checkpoint
  of the wrong variant or width cannot be half-loaded.
  """
  fresh_flat, loaded_flat = flatten_dict(fresh), flatten_dict(loaded)
  merged, problems = {}, []
  for path, value in fresh_flat.items():
    name = f"{collection}/" + "/".join(path)
    if path[0] in reinit:
      merged[path] = value
    elif path not in loaded_flat:
      problems.append(f"missing {name} {tuple(value.shape)}")
    elif tuple(loaded_flat[path].shape) != tuple(value.shape):
      problems.append(
          f"{name}: checkpoint {tuple(loaded_flat[path].shape)} vs model {tuple(value.shape)}"
      )
    else:
      merged[path] = np.asarray(loaded_flat[path], dtype=value.dtype)
  if problems:
    raise ValueError(
        "config.init_from does not fit this model (list the top-level names in "
        "--config.init_from_reinit to re-initialise them):\n  " + "\n  ".join(problems)
    )
  unused = sorted("/".join(p) for p in loaded_flat if p not in fresh_flat)
  if unused:
    logging.info(
        "init_from: %d %s tensors of the checkpoint are not used by this model, e.g. %s",
        len(unused),
        collection,
        unused[:3],
    )
  return unflatten_dict(merged)


def load_initial_variables(
    state: TrainState,
    config: ml_collections.ConfigDict,
    tx: optax.GradientTransformation,
    sharding: NamedSharding,
) -> TrainState:
  try:
    artifacts.check_normalization(config.init_from, config.data.normalization)
  except ValueError as mismatch:  # fine-tuning to a new input convention is allowed, but rare
    logging.warning("Fine-tuning across input conventions: %s", mismatch)
  loaded, _ = artifacts.load_model_variables(config.init_from)
  reinit = tuple(config.init_from_reinit)
  fresh = jax.device_get(state.variables)
  params = merge_variables(fresh["params"], loaded["params"], reinit, "params")
  batch_stats = merge_variables(
      fresh["batch_stats"], loaded.get("batch_stats", {}), reinit, "batch_stats"
  )
  logging.info("Initialised from %s (re-initialised: %s).", config.init_from, reinit or "nothing")
  new_state = state.replace(
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      ema_params=jax.tree.map(np.copy, params),
      ema_batch_stats=jax.tree.map(np.copy, batch_stats),
  )
  return jax.device_put(new_state, sharding)
