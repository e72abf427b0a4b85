"""Box geometry in NumPy: conventions, IoU, clipping, greedy NMS.

One convention inside the package: float [x1, y1, x2, y2] in continuous pixel coordinates,
pixel (col, row) covering [col, col + 1) x [row, row + 1), so width = x2 - x1 and a box over the
whole W x H image is [0, 0, W, H]. TFDS's normalised VOC boxes times the image size land here,
and so does COCO's [x, y, w, h]. PASCAL VOC files store 1-based inclusive pixel indices
(xmin..xmax both inside the object, width = xmax - xmin + 1); `voc_to_continuous` and
`continuous_to_voc` convert, and the VOC metric computes IoU with the devkit's +1 widths.
"""

from __future__ import annotations

import numpy as np


def as_boxes(boxes) -> np.ndarray:
  """float64 [N, 4] (an empty input gives shape [0, 4])."""
  array = np.asarray(boxes, dtype=np.float64)
  if array.size == 0:
    return np.zeros((0, 4), np.float64)
  if array.ndim != 2 or array.shape[1] != 4:
    raise ValueError(f"boxes must have shape [N, 4] (x1, y1, x2, y2), got {array.shape}")
  return array


def voc_to_continuous(boxes) -> np.ndarray:
  """1-based inclusive [xmin, ymin, xmax, ymax] -> continuous [xmin - 1, ymin - 1, xmax, ymax]."""
  boxes = as_boxes(boxes).copy()
  boxes[:, :2] -= 1.0
  return boxes


def continuous_to_voc(boxes) -> np.ndarray:
  """Inverse of `voc_to_continuous`; IoU with +1 widths then equals the continuous IoU."""
  boxes = as_boxes(boxes).copy()
  boxes[:, :2] += 1.0
  return boxes


def areas(boxes, pixel_inclusive: bool = False) -> np.ndarray:
  boxes = as_boxes(boxes)
  extra = 1.0 if pixel_inclusive else 0.0
  widths = np.maximum(boxes[:, 2] - boxes[:, 0] + extra, 0.0)
  heights = np.maximum(boxes[:, 3] - boxes[:, 1] + extra, 0.0)
  return widths * heights


def iou_matrix(boxes_a, boxes_b, pixel_inclusive: bool = False) -> np.ndarray:
  """[len(a), len(b)] intersection over union.

  pixel_inclusive=True is the VOC devkit's rule (VOCevaldet.m): coordinates are pixel indices
  and a box spans x2 - x1 + 1 pixels. Boxes of zero area give IoU 0, never NaN.
  """
  a, b = as_boxes(boxes_a), as_boxes(boxes_b)
  extra = 1.0 if pixel_inclusive else 0.0
  left = np.maximum(a[:, None, 0], b[None, :, 0])
  top = np.maximum(a[:, None, 1], b[None, :, 1])
  right = np.minimum(a[:, None, 2], b[None, :, 2])
  bottom = np.minimum(a[:, None, 3], b[None, :, 3])
  intersection = np.maximum(right - left + extra, 0.0) * np.maximum(bottom - top + extra, 0.0)
  union = areas(a, pixel_inclusive)[:, None] + areas(b, pixel_inclusive)[None, :] - intersection
  return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def clip_to_image(boxes, height: int, width: int) -> np.ndarray:
  boxes = as_boxes(boxes).copy()
  boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, width)
  boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, height)
  return boxes


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
  """Greedy non-maximum suppression: indices kept, highest score first.

  A box is suppressed when its IoU with an already kept box is strictly greater than the
  threshold (R-CNN `nms.m` keeps `o <= overlap`); equal scores keep their input order (stable
  sort), so the result never depends on the sorting algorithm. Continuous IoU (no +1).
  """
  boxes = as_boxes(boxes)
  scores = np.asarray(scores, np.float64)
  if len(boxes) != len(scores):
    raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
  order = np.argsort(-scores, kind="stable")
  box_areas = areas(boxes)
  keep = []
  while order.size:
    best = order[0]
    keep.append(best)
    rest = order[1:]
    left = np.maximum(boxes[best, 0], boxes[rest, 0])
    top = np.maximum(boxes[best, 1], boxes[rest, 1])
    right = np.minimum(boxes[best, 2], boxes[rest, 2])
    bottom = np.minimum(boxes[best, 3], boxes[rest, 3])
    intersection = np.maximum(right - left, 0.0) * np.maximum(bottom - top, 0.0)
    union = box_areas[best] + box_areas[rest] - intersection
    overlap = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
    order = rest[overlap <= iou_threshold]
  return np.asarray(keep, np.int64)
