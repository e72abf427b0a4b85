"""Region proposals: OpenCV's selective search ("fast" mode), filtered, capped, cached on disk.

Selective search (Uijlings et al. 2013) as R-CNN used it: fast mode, i.e. HSV and Lab colour
spaces x Felzenszwalb segmentations at three scales x two similarity strategies. OpenCV's fast
mode uses k = base_k, base_k + inc_k, base_k + 2 inc_k with base_k = inc_k = 150 by default;
`superpixel_scale` multiplies both (GoogLeNet section 8: "we doubled the superpixel size",
which roughly halves the number of proposals: superpixel_scale=2).

Determinism: OpenCV ranks regions by `rand() * level` with the C library's global `rand()`
(`selectivesearchsegmentation.cpp`), so two calls in one process return the same set of boxes
in different orders, and a cap would keep different boxes. `srand(seed)` is called right before
every `process()` (under a lock, so concurrent callers cannot interleave), which makes the order
a function of the image and the settings. Where the C library cannot be reached through ctypes,
the boxes are put in a seeded hash order instead (deterministic, but without the level weighting),
with a warning.

After OpenCV: boxes become continuous [x1, y1, x2, y2] in the original image's pixels (the
search may run on a copy resized to `max_side`), boxes whose shorter side is below `min_size`
pixels are dropped, duplicates (equal after rounding to 1/100 px) are removed keeping the first
occurrence, and the first `max_proposals` are kept.

Cache: one .npy per (image content, settings), named by SHA-256 of the pixels and of the
settings (plus the OpenCV version), so runs with other workdirs reuse them and a changed
setting never reads a stale file.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import threading
from typing import Any

from absl import logging
import numpy as np

from detection import boxes as box_ops

OPENCV_DEFAULT_K = 150
_ALGORITHM_VERSION = 2  # bump when the post-processing below changes
_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ProposalSettings:
  superpixel_scale: float = 2.0
  sigma: float = 0.8
  max_side: int = 500  # longer image side for the search (R-CNN: 500 px); 0 keeps the size
  min_size: float = 8.0  # shorter box side, in original pixels; smaller boxes are dropped
  max_proposals: int = 2000
  seed: int = 0

  def __post_init__(self):
    if self.superpixel_scale <= 0 or self.sigma < 0:
      raise ValueError(f"proposals: superpixel_scale must be > 0 and sigma >= 0, got {self}")
    if self.max_proposals < 1 or self.max_side < 0 or self.min_size < 0:
      raise ValueError(f"proposals: max_proposals >= 1, max_side >= 0, min_size >= 0; got {self}")

  @property
  def k(self) -> int:
    return max(1, int(round(OPENCV_DEFAULT_K * self.superpixel_scale)))

  def cache_key(self) -> str:
    import cv2

    fields = dict(dataclasses.asdict(self), opencv=cv2.__version__, version=_ALGORITHM_VERSION)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

  @classmethod
  def from_config(cls, config: Any) -> ProposalSettings:
    return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})


def _find_srand():
  try:
    return ctypes.CDLL(None).srand
  except (OSError, AttributeError, TypeError):
    return None


_SRAND = _find_srand()


def _opencv_selective_search(bgr: np.ndarray, settings: ProposalSettings) -> np.ndarray:
  """int [P, 4] rectangles (x, y, w, h) in OpenCV's rank order."""
  import cv2

  if not hasattr(cv2, "ximgproc"):
    raise ImportError(
        "cv2.ximgproc is missing: selective search needs the OpenCV contrib "
        "modules. `pip uninstall opencv-python opencv-python-headless; "
        "pip install opencv-contrib-python-headless`."
    )
  search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
  search.setBaseImage(bgr)
  search.switchToSelectiveSearchFast(settings.k, settings.k, settings.sigma)
  with _LOCK:
    if _SRAND is not None:
      _SRAND(ctypes.c_uint(settings.seed + 1))  # glibc treats srand(0) as srand(1)
    rects = search.process()
  return np.asarray(rects, np.int64).reshape(-1, 4)


def _hash_order(boxes: np.ndarray, seed: int) -> np.ndarray:
  keys = [
      hashlib.sha256(np.asarray([seed], np.int64).tobytes() + row.tobytes()).digest()
      for row in np.round(boxes * 100).astype(np.int64)
  ]
  return np.asarray(sorted(range(len(keys)), key=keys.__getitem__), np.int64)


def selective_search(image: np.ndarray, settings: ProposalSettings) -> tuple[np.ndarray, dict]:
  """uint8 RGB [H, W, 3] -> (float32 [P, 4] continuous boxes, counts at each filtering step)."""
  import cv2

  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"selective search needs uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
  height, width = image.shape[:2]
  scale = 1.0
  if settings.max_side and max(height, width) > settings.max_side:
    scale = settings.max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
  rects = _opencv_selective_search(np.ascontiguousarray(image[..., ::-1]), settings)
  boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1).astype(np.float64)
  if scale != 1.0:
    boxes[:, [0, 2]] *= width / image.shape[1]
    boxes[:, [1, 3]] *= height / image.shape[0]
  boxes = box_ops.clip_to_image(boxes, height, width)
  if _SRAND is None:
    logging.log_first_n(
        logging.WARNING,
        "libc srand not reachable: selective-search proposals "
        "are put in a seeded hash order instead of OpenCV's ranking.",
        1,
    )
    boxes = boxes[_hash_order(boxes, settings.seed)]
  counts = {"raw": len(boxes)}
  sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
  boxes = boxes[sides >= max(settings.min_size, 1e-6)]
  counts["after_min_size"] = len(boxes)
  _, first = np.unique(np.round(boxes * 100).astype(np.int64), axis=0, return_index=True)
  boxes = boxes[np.sort(first)]
  counts["after_dedup"] = len(boxes)
  boxes = boxes[: settings.max_proposals]
  counts["kept"] = len(boxes)
  return boxes.astype(np.float32), counts


def image_digest(image: np.ndarray) -> str:
  image = np.ascontiguousarray(image)
  digest = hashlib.sha256(f"{image.dtype}{image.shape}".encode())
  digest.update(image.tobytes())
  return digest.hexdigest()


class ProposalCache:
  """Proposals on disk under `directory`, computed once per image content and settings."""

  def __init__(self, directory: str, settings: ProposalSettings):
    self.directory = os.path.abspath(os.path.expanduser(directory))
    self.settings = settings
    self._settings_key = settings.cache_key()
    self.hits = 0
    self.misses = 0

  def path(self, image: np.ndarray) -> str:
    digest = image_digest(image)
    return os.path.join(self.directory, self._settings_key, digest[:2], f"{digest}.npy")

  def get(self, image: np.ndarray) -> np.ndarray:
    path = self.path(image)
    if os.path.exists(path):
      try:
        boxes = np.load(path)
        self.hits += 1
        return boxes
      except (OSError, ValueError) as error:  # a torn write of an interrupted run
        logging.warning("Recomputing unreadable cached proposals %s (%s).", path, error)
    boxes, _ = selective_search(image, self.settings)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(partial, "wb") as f:
      np.save(f, boxes)
    os.replace(partial, path)  # atomic: readers see the whole file or none
    self.misses += 1
    return boxes
