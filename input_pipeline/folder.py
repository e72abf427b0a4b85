"""Image folders: root/<class>/<image>, the layout of torchvision's ImageFolder.

Two layouts:
  root/train/<class>/...  and  root/val/<class>/...   (or root/validation/...)
  root/<class>/...        split deterministically: a fixed hash of each file's path puts a
                          `val_fraction` of every class in 'val', the rest in 'train'.
Splits: 'train', 'val' (alias 'validation') and 'all'. The class index is the position of the
class folder's name in sorted order. Images stream from disk: only the file list is in memory.

Scraped folders are rarely clean (hymenoptera has a GIF placeholder among its JPEGs), so
every file is checked once when the list is built: magic bytes always, a decode too with
check='decode'. Bad files are skipped and logged once with their paths (on_corrupt='skip') or
raise `CorruptImageError` naming them (on_corrupt='raise'), instead of failing later inside
tf.data with no file name. GIF, PNG and BMP are valid images and decode to RGB.
"""

import dataclasses
import functools
import hashlib
import os
from pathlib import Path

from absl import logging
from etils import epath
import ml_collections
import numpy as np
import tensorflow as tf

from input_pipeline import sharding, sources
from input_pipeline.traced import as_written
from runtime import paths as path_layer

# Formats tf.io.decode_image reads; anything else is not an image to this pipeline.
MAGIC_NUMBERS = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
SPLIT_ALIASES = {"validation": "val"}
# The end of a file read to find its format's trailer (see _truncation).
TAIL_BYTES = 1024
VAL_DIR_NAMES = ("val", "validation")
# Changing the salt would move files between train and val: keep it fixed.
SPLIT_SALT = "input_pipeline.folder/v1"


class CorruptImageError(ValueError):
  """A file in an image folder is not a decodable image (and on_corrupt='raise')."""


@dataclasses.dataclass(frozen=True)
class SkippedFile:
  path: str
  reason: str


class ImageFolderSource(sources.Source):
  """Labelled images under `root`; see the module docstring for layouts and split names."""

  def __init__(
      self, root: str, *, val_fraction: float = 0.2, check: str = "decode", on_corrupt: str = "skip"
  ):
    self.root = epath.Path(root)  # a local folder or one in a bucket (runtime/paths.py)
    if not self.root.is_dir():
      raise FileNotFoundError(f"config.data.source='folder:{root}': {root} is not a directory")
    split_dirs = (self.root / "train").is_dir()
    class_root = self.root / "train" if split_dirs else self.root
    folders = sorted(
        entry for entry in class_root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    empty = [folder.name for folder in folders if not _holds_files(folder)]
    if empty:
      # An empty folder would be a class no example has: an output the model can never learn
      # and a shifted index for every later class. It is left out, and said so.
      logging.warning(
          "Leaving out class folder(s) of %s without any file: %s. Classes are "
          "the non-empty folders only.",
          class_root,
          ", ".join(empty),
      )
    self.class_names = [folder.name for folder in folders if folder.name not in empty]
    if not self.class_names:
      raise ValueError(f"{class_root} has no class folders; expected {class_root}/<class>/<image>")

    if split_dirs:
      candidates = {"train": self._list_files(class_root)}
      val_dir = next(
          (self.root / name for name in VAL_DIR_NAMES if (self.root / name).is_dir()), None
      )
      if val_dir is not None:
        candidates["val"] = self._list_files(val_dir)
    else:
      candidates = _split_by_hash(self._list_files(class_root), val_fraction)

    all_paths = [path for files in candidates.values() for path, _ in files]
    bad = find_bad_images(all_paths, check)
    self.skipped = tuple(SkippedFile(path, bad[path]) for path in all_paths if path in bad)
    _report_bad_files(self.skipped, len(all_paths), self.root, on_corrupt)
    self._splits = {
        name: [(path, label) for path, label in files if path not in bad]
        for name, files in candidates.items()
    }
    self._splits["all"] = [item for files in self._splits.values() for item in files]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def files(self, split: str) -> list[tuple[str, int]]:
    """(path, label) of every usable image of the split, in a fixed order."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in self._splits:
      if name == "val":
        raise ValueError(
            f"{self.root} has a train/ folder but no val/ or validation/ folder "
            "for split 'val' (config.data.eval_split)"
        )
      raise ValueError(
          f"image folder {self.root} has splits 'train', 'val' (or 'validation') "
          f"and 'all'; got {split!r} (config.data.train_split / eval_split)"
      )
    return self._splits[name]

  def num_examples(self, split: str) -> int:
    return len(self.files(split))

  def shard(self, split: str, process_index: int, process_count: int) -> sources.Shard:
    files = self.files(split)
    local = [files[i] for i in sharding.process_indices(len(files), process_index, process_count)]
    paths = tf.constant([path for path, _ in local] or [""], tf.string)
    labels = tf.constant([label for _, label in local] or [0], tf.int32)

    def read(index):
      return {"image": read_file(paths[index]), "label": labels[index]}

    def ordered():
      return tf.data.Dataset.range(len(local)).map(
          as_written(read), num_parallel_calls=tf.data.AUTOTUNE
      )

    def shuffled(seed):
      # Shuffling the file list, not a buffer of images: a full permutation every epoch at no
      # memory cost (a buffer over a class-sorted list would give class-sorted batches).
      order = tf.random.experimental.stateless_shuffle(tf.range(len(local), dtype=tf.int64), seed)
      return tf.data.Dataset.from_tensor_slices(order).map(
          as_written(read), num_parallel_calls=tf.data.AUTOTUNE
      )

    return sources.Shard(
        num_examples=len(local),
        ordered=ordered,
        shuffled=shuffled,
        global_index=sharding.strided_index(process_index, process_count),
    )

  def _list_files(self, directory: epath.Path) -> list[tuple[str, int]]:
    """(path, label) for every non-hidden file under directory/<class>/, sorted."""
    label_of = {name: label for label, name in enumerate(self.class_names)}
    files = []
    for entry in sorted(directory.iterdir()):
      if not entry.is_dir() or entry.name.startswith("."):
        continue
      if entry.name not in label_of:
        if not _holds_files(entry):
          continue  # an empty folder adds nothing (and was left out of the classes)
        raise ValueError(
            f"class folder {entry} is not among the training classes "
            f"{self.class_names} of {self.root}"
        )
      for folder, subfolders, names in path_layer.walk(entry):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        files.extend(
            (os.path.join(folder, name), label_of[entry.name])
            for name in sorted(names)
            if not name.startswith(".")
        )
    return files


def read_file(path: tf.Tensor) -> tf.Tensor:
  """The bytes of a file named by a string tensor, in a tf.data map. A local file through
  TensorFlow's reader; a URL through the path layer (TensorFlow's own gs:// client may not
  be the one runtime/paths.py uses, and cannot reach an emulator or a proxy)."""

  def read_through_the_path_layer(name):
    return path_layer.read_bytes(name.numpy().decode())

  def remote():
    data = tf.py_function(read_through_the_path_layer, [path], tf.string)
    data.set_shape([])
    return data

  is_remote = tf.strings.regex_full_match(path, "(gs|s3)://.*")
  return tf.cond(is_remote, remote, lambda: tf.io.read_file(path))


def _holds_files(folder: epath.Path) -> bool:
  for _, subfolders, names in path_layer.walk(folder):
    subfolders[:] = [d for d in subfolders if not d.startswith(".")]
    if any(not name.startswith(".") for name in names):
      return True
  return False


def _split_by_hash(files: list[tuple[str, int]], val_fraction: float) -> dict:
  """Per class, the round(val_fraction * n) files with the smallest hash go to 'val'.

  Hashing the path relative to its class folder makes the split independent of listing
  order, machine and root location.
  """

  def hash_key(path):
    relative = os.path.join(*Path(path).parts[-2:])
    return hashlib.sha256(f"{SPLIT_SALT}:{relative}".encode()).hexdigest()

  train, val = [], []
  for label in sorted({label for _, label in files}):
    class_files = sorted(
        (item for item in files if item[1] == label), key=lambda item: hash_key(item[0])
    )
    num_val = int(round(val_fraction * len(class_files)))
    val.extend(sorted(class_files[:num_val]))
    train.extend(sorted(class_files[num_val:]))
  return {"train": train, "val": val}


def _truncation(kind: str, head: bytes, tail: bytes, size: int) -> str | None:
  """Why a file of this format ends too early, from its first and last bytes; None if it is whole.

  Every format here ends with a fixed trailer (JPEG's EOI marker, PNG's IEND chunk, GIF's ';')
  or states its size (BMP), so a cut anywhere shows at the end of the file. The trailer may
  sit anywhere in the last TAIL_BYTES (some cameras pad after it; decoders ignore the padding).
  Inside JPEG data 0xFF is byte-stuffed, so FF D9 there can only be the marker.
  """
  if kind == "JPEG" and b"\xff\xd9" not in tail:
    return "truncated JPEG (no end-of-image marker)"
  if kind == "PNG" and b"IEND\xaeB`\x82" not in tail:
    return "truncated PNG (no IEND chunk)"
  if kind == "GIF" and not tail.rstrip(b"\x00").endswith(b";"):
    return "truncated GIF (no trailer)"
  if kind == "BMP" and len(head) >= 6 and int.from_bytes(head[2:6], "little") > size:
    return "truncated BMP (shorter than its header says)"
  return None


def find_bad_images(paths: list[str], check: str = "decode") -> dict[str, str]:
  """{path: reason} for files that are not decodable images.

  check='header' reads the first 16 and last TAIL_BYTES bytes of a file (format, and a trailer that a
  truncated file lacks); 'decode' also decodes every file that passed, with the decoder
  the pipeline uses (JPEGs at 1/8 scale, which still walks the whole compressed stream).
  """
  bad, looks_fine = {}, []
  for path in paths:
    try:
      with path_layer.open_file(path, "rb") as file:
        head = file.read(16)
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - TAIL_BYTES))
        tail = file.read(TAIL_BYTES)
    except OSError as error:
      bad[path] = f"unreadable ({error})"
      continue
    kind = next((name for magic, name in MAGIC_NUMBERS if head.startswith(magic)), None)
    if not head:
      bad[path] = "empty file"
    elif kind is None:
      bad[path] = f"not a JPEG, PNG, GIF or BMP image (starts with {head[:8]!r})"
    elif _truncation(kind, head, tail, size):
      bad[path] = _truncation(kind, head, tail, size)
    else:
      looks_fine.append(path)
  if check == "decode":
    for path in _undecodable(looks_fine):
      bad[path] = "corrupt or truncated image data (decoding failed)"
  return bad


def _undecodable(paths: list[str]) -> list[str]:
  """Paths whose decode fails, found in one parallel tf.data pass.

  ignore_errors drops the failing elements; the missing indices name the files.
  """
  if not paths:
    return []

  def decodes(index, path):
    data = read_file(path)
    shape = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.shape(tf.io.decode_jpeg(data, channels=3, ratio=8)),
        lambda: tf.shape(tf.io.decode_image(data, channels=3, expand_animations=False)),
    )
    return index, shape

  checked = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
  checked = checked.map(
      as_written(decodes), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
  )
  checked = checked.ignore_errors()
  decoded = {int(index) for index, _ in checked.as_numpy_iterator()}
  return [path for index, path in enumerate(paths) if index not in decoded]


def _report_bad_files(
    skipped: tuple[SkippedFile, ...], total: int, root: Path, on_corrupt: str
) -> None:
  if not skipped:
    return
  listing = "\n".join(f"  {item.path}: {item.reason}" for item in skipped)
  if on_corrupt == "raise":
    raise CorruptImageError(
        f"{len(skipped)} of {total} files in image folder {root} are not decodable images "
        f"(config.data.on_corrupt='raise'; set it to 'skip' to leave them out):\n{listing}"
    )
  logging.warning(
      "Skipping %d of %d files in image folder %s that are not decodable images "
      "(config.data.on_corrupt='skip'):\n%s",
      len(skipped),
      total,
      root,
      listing,
  )


def from_config(root: str, data_config: ml_collections.ConfigDict) -> ImageFolderSource:
  """The 'folder:<root>' source (registered in sources.py)."""
  return _cached_folder(
      root, data_config.folder_val_fraction, data_config.folder_check, data_config.on_corrupt
  )


@functools.lru_cache(maxsize=16)
def _cached_folder(
    root: str, val_fraction: float, check: str, on_corrupt: str
) -> ImageFolderSource:
  """Built once per process and settings: the file list is scanned and checked only once,
  so a corrupt file is also logged only once."""
  return ImageFolderSource(root, val_fraction=val_fraction, check=check, on_corrupt=on_corrupt)
