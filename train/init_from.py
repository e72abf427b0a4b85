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
    fresh: dict[str, Any],
    loaded: dict[str, Any],
    reinit: tuple[str, ...],
    collection: str,
    into: str = "",
) -> dict[str, Any]:
  """Loaded values for every leaf of `fresh`, except subtrees named in `reinit`.

  `into` names a top-level submodule of the model that the loaded variables fill (e.g.
  'trunk': a classification GoogLeNet as MultiBox's trunk); the model's variables outside
  it keep their fresh values, and `reinit` names are then top-level names of the loaded
  model. A leaf missing from `loaded` or of another shape is an error naming it, so a
  checkpoint of the wrong variant or width cannot be half-loaded.
  """
  fresh_flat, loaded_flat = flatten_dict(fresh), flatten_dict(loaded)
  if into and fresh and into not in fresh:
    raise ValueError(
        f"config.init_from_into={into!r} is not a submodule of this model; its top-level "
        f"names are {sorted(fresh)}."
    )
  merged, problems, mapped = {}, [], set()
  for path, value in fresh_flat.items():
    if into and path[0] != into:
      merged[path] = value
      continue
    source = path[1:] if into else path
    mapped.add(source)
    name = f"{collection}/" + "/".join(path)
    if source[0] in reinit:
      merged[path] = value
    elif source not in loaded_flat:
      problems.append(f"missing {name} {tuple(value.shape)}")
    elif tuple(loaded_flat[source].shape) != tuple(value.shape):
      problems.append(
          f"{name}: checkpoint {tuple(loaded_flat[source].shape)} vs model {tuple(value.shape)}"
      )
    else:
      merged[path] = np.asarray(loaded_flat[source], dtype=value.dtype)
  if problems:
    raise ValueError(
        "config.init_from does not fit this model (list the top-level names in "
        "--config.init_from_reinit to re-initialise them):\n  " + "\n  ".join(problems)
    )
  unused = sorted("/".join(p) for p in loaded_flat if p not in mapped)
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
  reinit, into = tuple(config.init_from_reinit), config.init_from_into
  fresh = jax.device_get(state.variables)
  params = merge_variables(fresh["params"], loaded["params"], reinit, "params", into)
  batch_stats = merge_variables(
      fresh["batch_stats"], loaded.get("batch_stats", {}), reinit, "batch_stats", into
  )
  logging.info(
      "Initialised %s from %s (re-initialised: %s).",
      f"'{into}'" if into else "the model",
      config.init_from,
      reinit or "nothing",
  )
  new_state = state.replace(
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      ema_params=jax.tree.map(np.copy, params),
      ema_batch_stats=jax.tree.map(np.copy, batch_stats),
  )
  return jax.device_put(new_state, sharding)
