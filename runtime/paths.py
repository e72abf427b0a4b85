"""The one path layer for user paths: local paths and object-store URLs (`gs://bucket/dir`).

etils' `epath`, which orbax already uses for its checkpoints, so one library decides how a
`gs://` path is read and written: through TensorFlow's file system by default, or through
fsspec/gcsfs with `EPATH_USE_TF=false` (the test suite does so to reach its Cloud Storage
emulator, which TensorFlow's `gs://` client cannot be pointed at).
"""

from __future__ import annotations

from collections.abc import Iterator
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


def read_text(path: str | os.PathLike) -> str:
  return epath.Path(absolute(path)).read_text()


def read_bytes(path: str | os.PathLike) -> bytes:
  return epath.Path(absolute(path)).read_bytes()


def write_text(path: str | os.PathLike, text: str) -> None:
  """One whole write (an object in a bucket is replaced at once, never seen half written),
  into a directory made if missing."""
  path = epath.Path(absolute(path))
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


def remove(path: str | os.PathLike) -> None:
  """Deletes a file (FileNotFoundError when it is not there)."""
  epath.Path(absolute(path)).unlink()


def rename(path: str | os.PathLike, new_path: str | os.PathLike) -> None:
  """Moves a file or a whole directory (in a bucket: every object under it)."""
  epath.Path(absolute(path)).rename(absolute(new_path))


def upload(local_path: str, path: str | os.PathLike) -> None:
  """Copies a local file to `path` (a URL or another local path), replacing it."""
  epath.Path(local_path).copy(epath.Path(absolute(path)), overwrite=True)


def download(path: str | os.PathLike, local_path: str) -> None:
  epath.Path(absolute(path)).copy(epath.Path(local_path), overwrite=True)


def download_files(path: str | os.PathLike, pattern: str, local_dir: str) -> list[str]:
  """Copies the files directly under `path` matching `pattern` into `local_dir`; their names."""
  names = file_names(path, pattern)
  for name in names:
    download(join(path, name), os.path.join(local_dir, name))
  return names


def file_names(path: str | os.PathLike, pattern: str = "*") -> list[str]:
  """Names of the files directly under `path` matching `pattern` ([] when it is absent)."""
  directory = epath.Path(absolute(path))
  try:
    return sorted(child.name for child in directory.glob(pattern) if not child.is_dir())
  except (FileNotFoundError, NotADirectoryError):
    return []


def walk(path: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
  """os.walk for a local path or a URL: (directory, subdirectory names, file names), top
  down; pruning the subdirectory list in place prunes the walk."""
  top = str(path)
  scheme = top[: top.index("://") + 3] if is_remote(top) else ""
  for directory, subdirectories, names in epath.Path(top).walk():
    directory = str(directory)
    # fsspec's listing names objects without the scheme: put it back.
    if scheme and not directory.startswith(scheme):
      directory = scheme + directory
    yield directory, subdirectories, names


def subdirectory_names(path: str | os.PathLike) -> list[str]:
  """Names of the directories directly under `path` ([] when it does not exist)."""
  directory = epath.Path(absolute(path))
  try:
    return [child.name for child in directory.iterdir() if child.is_dir()]
  except (FileNotFoundError, NotADirectoryError):
    return []
