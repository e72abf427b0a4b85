"""Resuming a workdir: check that it holds this model, then restore the newest good checkpoint.

A checkpoint that cannot be restored (a truncated array file, an empty step directory, one
holding only an unfinished temporary subdirectory) is renamed `<step>.damaged-<time>` (kept
for inspection, invisible to orbax) with a warning that names it, and the previous step is
tried: a damaged latest checkpoint costs the steps since the one before, never the run.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import orbax.checkpoint as ocp

from runtime import artifacts, paths

# Model fields that change the parameter tree (names, shapes or dtypes): a checkpoint of
# another value cannot be resumed. The others (dtype, dropout, kernels) may change on resume.
STRUCTURAL_MODEL_FIELDS = ("variant", "num_classes", "width", "aux_heads", "param_dtype")


def check_same_model(workdir: str, model_config: Mapping[str, Any]) -> None:
  """ValueError naming every structural field in which the config differs from the workdir's."""
  saved = artifacts.read_model_config(workdir)
  if saved is None:
    return
  differences = [
      f"model.{name}: {saved[name]!r} in the workdir, {model_config.get(name)!r} now"
      for name in STRUCTURAL_MODEL_FIELDS
      if name in saved and saved[name] != model_config.get(name)
  ]
  if differences:
    flags = " ".join(
        f"--config.model.{name}={saved[name]}"
        for name in STRUCTURAL_MODEL_FIELDS
        if name in saved and saved[name] != model_config.get(name)
    )
    raise ValueError(
        f"{workdir} holds checkpoints of another model ({'; '.join(differences)}). To resume "
        f"it, run with the workdir's settings ({flags}); to train this model, use a new "
        "--workdir (or --config.init_from=<that workdir> to start from its weights)."
    )


def _set_aside(manager: ocp.CheckpointManager, step: int) -> str:
  source = paths.join(str(manager.directory), str(step))
  target = f"{source}.damaged-{int(time.time())}"
  if jax.process_index() == 0 and paths.exists(source):
    paths.rename(source, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  return target


# TrainState fields added after checkpoints had been written, and how to fill them from an
# older checkpoint.
_ADDED_FIELDS = {
    "ema_batch_stats": lambda state: jax.tree.map(jnp.copy, state.batch_stats),
}


def _restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
  saved = getattr(manager.item_metadata(step), "tree", None)
  missing = [
      name
      for name in _ADDED_FIELDS
      if isinstance(saved, Mapping) and name not in saved and hasattr(abstract_state, name)
  ]
  if not missing:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  # The saved fields only, as a dict (orbax compares the target's structure with the saved one).
  target = {
      field.name: getattr(abstract_state, field.name)
      for field in dataclasses.fields(abstract_state)
      if field.name not in missing
  }
  restored = manager.restore(step, args=ocp.args.StandardRestore(target))
  state = abstract_state.replace(**restored)
  for name in missing:
    logging.info(
        "Checkpoint %s/%d predates TrainState.%s; filled from the saved state.",
        manager.directory,
        step,
        name,
    )
    state = state.replace(**{name: _ADDED_FIELDS[name](state)})
  return state


def restore_newest_good(
    manager: ocp.CheckpointManager, abstract_state: Any
) -> tuple[Any, int | None]:
  """(state, step) of the newest checkpoint that restores, or (None, None) if there is none.

  Newer checkpoints that failed are set aside once an older one has restored. If none
  restores, nothing is moved and the error names each failure (e.g. another model).
  """
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = _restore(manager, step, abstract_state)
    except Exception as error:  # orbax/tensorstore raise many kinds
      text = (str(error).splitlines() or [""])[0][:300]
      failures.append((step, f"{type(error).__name__}: {text}"))
      continue
    for bad_step, reason in failures:
      target = _set_aside(manager, bad_step)
      logging.warning(
          "Checkpoint %s/%d cannot be restored (%s); moved it to %s and resumed "
          "from step %d instead.",
          manager.directory,
          bad_step,
          reason,
          target,
          step,
      )
    if failures:
      manager.reload()
    return state, step
  if failures:
    listing = "; ".join(f"step {step}: {reason}" for step, reason in failures)
    raise ValueError(
        f"No checkpoint in {manager.directory} can be restored ({listing}). "
        "Move the directory away to start afresh, or fix the files."
    )
  return None, None
