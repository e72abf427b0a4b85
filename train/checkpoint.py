"""The training state's checkpoints in a workdir: `<workdir>/checkpoints/<step>/`.

Model variables for other binaries (exports, `model.json`, reading a workdir's latest
parameters) are runtime/artifacts.py's; this module is the training system's manager.
"""

from __future__ import annotations

import orbax.checkpoint as ocp

from runtime import paths
from runtime.artifacts import CHECKPOINTS_SUBDIR, write_replicated_arrays_once


def checkpoint_directory(workdir: str) -> str:
  return paths.join(workdir, CHECKPOINTS_SUBDIR)


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


# What orbax writes last into a step directory in an object store, which has no atomic rename.
COMMIT_MARKER = "commit_success.txt"


def describe_newest(directory: str, steps: list[int]) -> str:
  """The newest of `complete_steps(directory)` for a message, or that there is none."""
  return f"{directory}/{steps[-1]}" if steps else "none (no save completed)"


def complete_steps(directory: str) -> list[int]:
  """Steps whose checkpoint is finished, read from the directory itself, whatever state the
  manager's own bookkeeping is in after an asynchronous write failed.

  On a file system orbax writes step N into a temporary directory and renames it to `N` once
  complete, so the plain-number directories are exactly the complete checkpoints. In an
  object store (gs://) it writes `N/` in place and `N/commit_success.txt` last.
  """
  steps = [int(name) for name in paths.subdirectory_names(directory) if name.isdigit()]
  if paths.is_remote(directory):
    steps = [s for s in steps if paths.exists(paths.join(directory, str(s), COMMIT_MARKER))]
  return sorted(steps)
