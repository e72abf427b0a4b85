"""The embedded detection dataset: coloured shapes over textured backgrounds, made on the fly.

Three classes (circle, square, triangle) in random colours, 1-4 per image, partly occluding
each other (boxes may overlap up to `max_overlap_iou`), over backgrounds of random gratings,
smooth colour blotches and pixel noise, so selective search sees clutter and not only objects.
Image i of a split comes from its own generator seeded by (seed, split, i): a split of 100
images starts with the same images as a split of 10, and nothing is stored.
"""

from __future__ import annotations

import colorsys

import numpy as np

from detection import boxes as box_ops
from detection import datasets

CLASS_NAMES = ("circle", "square", "triangle")
SPLIT_IDS = {"train": 0, "test": 1, "validation": 2}
_MAX_PLACEMENT_ATTEMPTS = 50


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
  """[size, size] values in [0, 1] bilinearly interpolated from a cells x cells random grid."""
  grid = rng.random((cells + 1, cells + 1))
  position = np.linspace(0, cells, size, endpoint=False)
  i0 = np.floor(position).astype(int)
  t = position - i0
  rows = grid[i0] * (1 - t)[:, None] + grid[i0 + 1] * t[:, None]
  return rows[:, i0] * (1 - t)[None, :] + rows[:, i0 + 1] * t[None, :]


def _random_colour(
    rng: np.random.Generator, saturation=(0.5, 1.0), value=(0.45, 1.0)
) -> np.ndarray:
  rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
  return np.asarray(rgb) * 255.0


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
  """float [size, size, 3] in 0..255: base colour, gratings, blotches and pixel noise."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  image = np.broadcast_to(_random_colour(rng, (0.0, 0.6), (0.3, 0.8)), (size, size, 3)).copy()
  for _ in range(rng.integers(1, 3)):
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
    wave = np.sin(
        (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period + rng.uniform(0, 6)
    )
    image += wave[..., None] * (_random_colour(rng) - 127.5) * rng.uniform(0.1, 0.35)
  blotch = _smooth_noise(rng, size, int(rng.integers(2, 6)))
  image += (blotch[..., None] - 0.5) * (_random_colour(rng) - 127.5) * 0.8
  image += rng.normal(0, 8, (size, size, 3))
  return np.clip(image, 0, 255)


def _shape_mask(kind: str, box: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """bool [size, size]: pixels whose centre lies inside the shape filling `box`."""
  x1, y1, x2, y2 = box
  yy, xx = np.mgrid[0:size, 0:size] + 0.5
  if kind == "square":
    return (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
  cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
  if kind == "circle":
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
  # Triangle with its apex on one side of the box and its base on the opposite side.
  u, v = (xx - x1) / (x2 - x1), (yy - y1) / (y2 - y1)  # box-relative coordinates in [0, 1]
  u, v = [(u, v), (v, 1 - u), (1 - u, 1 - v), (1 - v, u)][int(rng.integers(4))]
  return (v >= 0) & (v <= 1) & (np.abs(u - 0.5) <= v / 2)


def generate_image(rng: np.random.Generator, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(uint8 [S, S, 3], boxes float32 [N, 4], labels int64 [N]) for one image."""
  size = config.image_size
  image = textured_background(rng, size)
  boxes, labels = [], []
  for _ in range(rng.integers(config.min_objects, config.max_objects + 1)):
    for _ in range(_MAX_PLACEMENT_ATTEMPTS):
      side = rng.uniform(config.min_size, config.max_size)
      aspect = np.exp(rng.uniform(-config.max_log_aspect, config.max_log_aspect))
      width = min(side * np.sqrt(aspect), size)
      height = min(side / np.sqrt(aspect), size)
      x1, y1 = rng.uniform(0, size - width), rng.uniform(0, size - height)
      box = np.round([x1, y1, x1 + width, y1 + height])
      if boxes and box_ops.iou_matrix(box[None], boxes).max() > config.max_overlap_iou:
        continue
      label = int(rng.integers(len(CLASS_NAMES)))
      mask = _shape_mask(CLASS_NAMES[label], box, size, rng)
      shading = 1.0 + 0.15 * (_smooth_noise(rng, size, 3)[..., None] - 0.5)
      image = np.where(mask[..., None], np.clip(_random_colour(rng) * shading, 0, 255), image)
      ys, xs = np.nonzero(mask)  # the box is the drawn shape's extent
      boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
      labels.append(label)
      break
  return (
      np.round(image).astype(np.uint8),
      np.asarray(boxes, np.float32).reshape(-1, 4),
      np.asarray(labels, np.int64),
  )


class SyntheticSplit(datasets.DetectionSplit):
  """`config`: the `detection.synthetic` section (num_train, num_test, image_size, ...)."""

  def __init__(self, config, split: str, max_images: int = -1):
    if split not in SPLIT_IDS:
      raise ValueError(f"synthetic detection data has splits {sorted(SPLIT_IDS)}, got {split!r}")
    count = config.num_test if split in ("test", "validation") else config.num_train
    if max_images > 0:
      count = min(count, max_images)
    self.class_names = CLASS_NAMES
    self.report = datasets.AnnotationReport()
    self._images, self.annotations = [], []
    for index in range(count):
      rng = np.random.default_rng([config.seed, SPLIT_IDS[split], index])
      image, boxes, labels = generate_image(rng, config)
      self._images.append(image)
      self.annotations.append(
          datasets.Annotation(
              f"{split}_{index:05d}",
              config.image_size,
              config.image_size,
              boxes,
              labels,
              np.zeros(len(labels), bool),
          )
      )

  def image(self, index: int) -> np.ndarray:
    return self._images[index]

  def encoded(self, index: int) -> bytes:
    return datasets.encode_png(self._images[index])


def from_config(argument: str, config, split: str, max_images: int) -> SyntheticSplit:
  """The 'synthetic' dataset (registered in datasets.py); it takes no argument."""
  del argument
  return SyntheticSplit(config.synthetic, split, max_images)
