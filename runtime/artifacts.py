"""Model artifacts: the variables and `model.json` that every binary reads and writes.

Two places hold them, both orbax:
  * a training workdir: `<workdir>/checkpoints/<step>/` (the whole TrainState, written by the
    training system, train/checkpoint.py) and `<workdir>/model.json`;
  * an exported model directory: `variables/` (params, batch_stats) plus `model.json`, the
    model section of the config that built it. Written by the weight importer; read by
    evaluation, detection and training's `init_from`.
Both may also hold `input.json`, the input convention the weights expect
(`{"normalization": "caffe", ...}`): written by training and by the weight importer, checked by
evaluation (which converts each model's views to its convention, eval/renormalize.py) and by
`check_normalization` (fine-tuning warns), so weights are never silently fed the wrong pixels.
`load_model_variables` reads either, so every consumer takes a workdir or an export alike,
whatever the topology it was written on (8 devices, 2 processes, ...): arrays are restored
replicated onto the devices of the reading process, never onto the writer's device layout.
"""

from __future__ import annotations

from collections.abc import Mapping
import functools
import json
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from runtime import paths

CHECKPOINTS_SUBDIR = "checkpoints"
VARIABLES_SUBDIR = "variables"
MODEL_CONFIG_FILE = "model.json"
INPUT_CONVENTION_FILE = "input.json"


@functools.cache
def write_replicated_arrays_once() -> None:
  """Makes orbax write each replicated array from its first replica, not in slices from all.

  orbax's default ("replica-parallel" saving) has every replica write a slice of a replicated
  array, and slices each array with a jitted program per distinct shape, compiled at the first
  save of every process: 760 replicated arrays of distinct shapes (the size of a GoogLeNet
  train state) took 35-41 s to save the first time on XLA:CPU with 8 devices, 1.1-1.8 s with
  this setting. The state is ~100 MB, far too small for split writes to pay.
  Applies to the whole process (orbax keeps one type-handler registry); cached, so it
  registers once however often it is called.
  """
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
  )


def write_model_config(directory: str, model_config: Mapping[str, Any]) -> None:
  """`<directory>/model.json`: the model section that rebuilds a matching model."""
  text = json.dumps(dict(model_config), indent=2, sort_keys=True)
  paths.write_text(paths.join(directory, MODEL_CONFIG_FILE), text)


def read_model_config(directory: str) -> dict[str, Any] | None:
  """The model section recorded in `directory`, None when it records none."""
  path = paths.join(directory, MODEL_CONFIG_FILE)
  if not paths.exists(path):
    return None
  with paths.open_file(path) as f:
    return json.load(f)


def write_input_convention(directory: str, normalization: str, **details: Any) -> None:
  """`<directory>/input.json`: the config.data.normalization the weights were trained with."""
  text = json.dumps({"normalization": normalization, **details}, indent=2, sort_keys=True)
  paths.write_text(paths.join(directory, INPUT_CONVENTION_FILE), text)


def read_input_convention(directory: str) -> dict[str, Any] | None:
  """`<directory>/input.json`, None for directories written before it existed."""
  path = paths.join(directory, INPUT_CONVENTION_FILE)
  if not paths.exists(path):
    return None
  with paths.open_file(path) as f:
    return json.load(f)


def check_normalization(directory: str, normalization: str) -> None:
  """Raises ValueError when `directory`'s weights expect another input normalisation.

  Directories written before input.json existed (or by other tools) are not checked.
  """
  expected = (read_input_convention(directory) or {}).get("normalization")
  if expected and expected != normalization:
    raise ValueError(
        f"{directory} holds weights trained on input normalised with '{expected}' "
        f"({INPUT_CONVENTION_FILE}), but this run normalises with '{normalization}', which would "
        f"feed them the wrong pixels. Set --config.data.normalization={expected}."
    )


def save_model_variables(
    directory: str, variables: Mapping[str, Any], model_config: Mapping[str, Any]
) -> None:
  """Writes {'params', 'batch_stats'} and the model config that builds a matching model."""
  directory = paths.absolute(directory)
  paths.makedirs(directory)
  tree = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  write_replicated_arrays_once()
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(paths.join(directory, VARIABLES_SUBDIR), tree, force=True)
  checkpointer.wait_until_finished()
  write_model_config(directory, model_config)


def _is_array_metadata(node: Any) -> bool:
  return hasattr(node, "shape") and hasattr(node, "dtype")


def replicated_target(tree_metadata: Any) -> Any:
  """Abstract arrays of the saved shapes and dtypes, replicated over all current devices.

  Restoring without a target makes orbax rebuild the writer's shardings, which fails when the
  reader has other devices ("Topology mismatch"); a target on the current devices works from
  any saved topology. Every process reads the whole (small: model variables) arrays.
  """
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("all",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  tree = getattr(tree_metadata, "tree", tree_metadata)

  def abstract(node):
    if not _is_array_metadata(node):
      return node
    return jax.ShapeDtypeStruct(node.shape, node.dtype, sharding=replicated)

  return jax.tree.map(abstract, tree, is_leaf=_is_array_metadata)


def _as_numpy(params: Any, batch_stats: Any) -> dict[str, Any]:
  return jax.tree.map(np.asarray, {"params": params, "batch_stats": batch_stats})


def load_model_variables(
    directory: str, *, use_ema: bool = False, step: int | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """(variables, model_config) from an exported model or a training workdir.

  From a workdir the latest checkpoint is used, or `step`; `use_ema` picks the Polyak-averaged
  parameters. model_config is None when the directory does not record it.
  """
  directory = paths.absolute(directory)
  model_config = read_model_config(directory)
  exported = paths.join(directory, VARIABLES_SUBDIR)
  if paths.isdir(exported):
    checkpointer = ocp.StandardCheckpointer()
    target = replicated_target(checkpointer.metadata(exported).item_metadata)
    tree = checkpointer.restore(exported, target)
    return _as_numpy(tree["params"], tree.get("batch_stats", {})), model_config
  checkpoints = paths.join(directory, CHECKPOINTS_SUBDIR)
  if paths.isdir(checkpoints):
    with ocp.CheckpointManager(
        checkpoints, item_handlers=ocp.StandardCheckpointHandler()
    ) as manager:
      if step is None:
        step = manager.latest_step()
        if step is None:
          raise FileNotFoundError(f"{directory} holds no complete training checkpoint yet.")
      elif step not in manager.all_steps():
        raise FileNotFoundError(
            f"{directory} has no checkpoint of step {step}; it has "
            f"{sorted(manager.all_steps())}."
        )
      state = manager.restore(
          step, args=ocp.args.StandardRestore(replicated_target(manager.item_metadata(step)))
      )
    params = state["ema_params"] if use_ema else state["params"]
    batch_stats = state.get("batch_stats", {})
    if use_ema and "ema_batch_stats" in state:  # absent from checkpoints before the field existed
      batch_stats = state["ema_batch_stats"]
    return _as_numpy(params, batch_stats), model_config
  raise FileNotFoundError(
      f"{directory} is neither an exported model (expected {VARIABLES_SUBDIR}/ and "
      f"{MODEL_CONFIG_FILE}) nor a training workdir (expected {CHECKPOINTS_SUBDIR}/)."
  )
