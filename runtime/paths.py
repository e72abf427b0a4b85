"""The one path layer for user paths: local paths and object-store URLs (`gs://bucket/dir`).

etils' `epath`, which orbax already uses for its checkpoints, so one library decides how a
`gs://` path is read and written: through TensorFlow's file system by default, or through
fsspec/gcsfs with `EPATH_USE_TF=false` (the test suite does so to reach its Cloud Storage
emulator, which TensorFlow's `gs://` client cannot be pointed at).
"""

from __future__ import annotations

import os

from etils import epath

REMOTE_SCHEMES = ("gs://", "s3://")


def is_remote(path: str | os.PathLike) -> bool:
  return str(path).startswith(REMOTE_SCHEMES)


def absolute(path: str | os.PathLike) -> str:
  """A local path made absolute; a URL as given (os.path.abspath would make it local)."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def join(base: str | os.PathLike, *parts: str) -> str:
  return str(epath.Path(absolute(base)).joinpath(*parts))


def exists(path: str | os.PathLike) -> bool:
  return epath.Path(absolute(path)).exists()


def isdir(path: str | os.PathLike) -> bool:
  return epath.Path(absolute(path)).is_dir()


def makedirs(path: str | os.PathLike) -> None:
  epath.Path(absolute(path)).mkdir(parents=True, exist_ok=True)


def open_file(path: str | os.PathLike, mode: str = "r"):
  """`open()` for a local path or a URL (modes 'r', 'w', 'a', with 'b' for bytes)."""
  return epath.Path(absolute(path)).open(mode)


def subdirectory_names(path: str | os.PathLike) -> list[str]:
  """Names of the directories directly under `path` ([] when it does not exist)."""
  directory = epath.Path(absolute(path))
  try:
    return [child.name for child in directory.iterdir() if child.is_dir()]
  except (FileNotFoundError, NotADirectoryError):
    return []
