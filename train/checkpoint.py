"""Checkpoints: the training state in a workdir, and stand-alone model variables.

Two layouts, both orbax:
  * `<workdir>/checkpoints/<step>/`: the whole TrainState, written by a CheckpointManager
    during training (periodic saves, keep the last K, resume from the latest).
  * an exported model directory: `variables/` (params, batch_stats) plus `model.json`, the
    model section of the config that built it. Written by the weight importer; read by
    evaluation and by training's `init_from`.
`load_model_variables` reads either, so every consumer takes a workdir or an export alike.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINTS_SUBDIR = "checkpoints"
VARIABLES_SUBDIR = "variables"
MODEL_CONFIG_FILE = "model.json"


def checkpoint_manager(workdir: str, *, max_to_keep: int = 3,
                       save_interval_steps: int = 1) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, save_interval_steps=save_interval_steps, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINTS_SUBDIR),
                               options=options)


def save_model_variables(directory: str, variables: Mapping[str, Any],
                         model_config: Mapping[str, Any]) -> None:
  """Writes {'params', 'batch_stats'} and the model config that builds a matching model."""
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  tree = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(directory, VARIABLES_SUBDIR), tree, force=True)
  checkpointer.wait_until_finished()
  with open(os.path.join(directory, MODEL_CONFIG_FILE), "w") as f:
    json.dump(dict(model_config), f, indent=2, sort_keys=True)


def _to_numpy(tree: Any) -> Any:
  return jax.tree.map(np.asarray, tree)


def load_model_variables(directory: str, *, use_ema: bool = False
                         ) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """(variables, model_config) from an exported model or a training workdir.

  From a workdir the latest checkpoint is used; `use_ema` picks the Polyak-averaged parameters.
  model_config is None when the directory does not record it.
  """
  directory = os.path.abspath(directory)
  config_path = os.path.join(directory, MODEL_CONFIG_FILE)
  model_config = None
  if os.path.exists(config_path):
    with open(config_path) as f:
      model_config = json.load(f)
  exported = os.path.join(directory, VARIABLES_SUBDIR)
  if os.path.isdir(exported):
    tree = ocp.StandardCheckpointer().restore(exported)
    return _to_numpy({"params": tree["params"], "batch_stats": tree.get("batch_stats", {})}), model_config
  if os.path.isdir(os.path.join(directory, CHECKPOINTS_SUBDIR)):
    manager = checkpoint_manager(directory)
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"{directory} holds no complete training checkpoint yet.")
    state = manager.restore(step, args=ocp.args.StandardRestore())
    params = state["ema_params"] if use_ema else state["params"]
    return _to_numpy({"params": params, "batch_stats": state.get("batch_stats", {})}), model_config
  raise FileNotFoundError(
      f"{directory} is neither an exported model (expected {VARIABLES_SUBDIR}/ and "
      f"{MODEL_CONFIG_FILE}) nor a training workdir (expected {CHECKPOINTS_SUBDIR}/).")
