"""The training state's checkpoints in a workdir: `<workdir>/checkpoints/<step>/`.

Model variables for other binaries (exports, `model.json`, reading a workdir's latest
parameters) are runtime/artifacts.py's; this module is the training system's manager.
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp

from runtime.artifacts import CHECKPOINTS_SUBDIR, write_replicated_arrays_once


def checkpoint_directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINTS_SUBDIR)


def checkpoint_manager(workdir: str, *, max_to_keep: int = 3) -> ocp.CheckpointManager:
  write_replicated_arrays_once()  # no per-shape compilation at the first save
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  # The handler is named up front so that item metadata (shapes, dtypes) can be read before
  # any restore: `runtime.artifacts.replicated_target` builds the restore target from it.
  return ocp.CheckpointManager(
      checkpoint_directory(workdir),
      options=options,
      item_handlers=ocp.StandardCheckpointHandler(),
  )


def complete_steps(directory: str) -> list[int]:
  """Steps whose checkpoint is finished on disk, read from the directory itself.

  orbax writes step N into a temporary directory and renames it to `N` once complete, so the
  plain-number directories are exactly the complete checkpoints, whatever state the manager's
  own bookkeeping is in after an asynchronous write failed.
  """
  directory = str(directory)
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  return sorted(
      int(name) for name in names if name.isdigit() and os.path.isdir(os.path.join(directory, name))
  )
