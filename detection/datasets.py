"""Detection datasets: one split = annotations in memory + images on demand.

Sources, chosen by `config.detection.dataset`:
    'synthetic'         coloured shapes on textured backgrounds, generated on the fly (synthetic.py)
    'tfds:<name>'       a TFDS detection dataset with objects.bbox / objects.label, e.g. voc/2007
                        (objects.is_difficult is used when present)
    'voc:<root>'        a PASCAL VOC folder: Annotations/*.xml, JPEGImages/, ImageSets/Main/<split>.txt

Boxes come out in the package's convention (boxes.py): continuous [x1, y1, x2, y2] pixels.
Annotation problems are never dropped silently (`sanitize_boxes`): a box reaching outside the
image is clipped and counted; a box that is inverted, empty after clipping or not finite, an
unknown class name, or an unreadable annotation file is an error naming the file and object
(on_bad_annotation='raise'), or is skipped and counted with its name (on_bad_annotation='skip').
`DetectionSplit.report` carries the counts; `log_report` prints them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
import dataclasses
import hashlib
import io

from absl import logging
import numpy as np

from detection import metrics
from runtime.registry import Registry

ON_BAD_ANNOTATION = ("raise", "skip")


class AnnotationError(ValueError):
  """A malformed annotation (on_bad_annotation='raise'); the message names the file."""


@dataclasses.dataclass(frozen=True)
class Annotation:
  image_id: str
  height: int
  width: int
  boxes: np.ndarray  # float32 [N, 4] continuous x1, y1, x2, y2
  labels: np.ndarray  # int64 [N], 0-based class index
  difficult: np.ndarray  # bool [N]

  def ground_truth(self) -> metrics.GroundTruth:
    return metrics.GroundTruth.create(self.boxes, self.labels, self.difficult)


@dataclasses.dataclass
class AnnotationReport:
  """What loading a split changed: clipped boxes and skipped objects/images, with names."""

  clipped_boxes: int = 0
  unreadable_images: int = 0  # skipped whatever on_bad_annotation says
  skipped: list[str] = dataclasses.field(default_factory=list)

  def to_dict(self) -> dict:
    return {
        "clipped_boxes": self.clipped_boxes,
        "unreadable_images": self.unreadable_images,
        "skipped": len(self.skipped),
        "skipped_examples": self.skipped[:20],
    }


def log_report(name: str, report: AnnotationReport) -> None:
  if report.clipped_boxes:
    logging.warning(
        "%s: %d boxes reached outside their image and were clipped to it.",
        name,
        report.clipped_boxes,
    )
  if report.unreadable_images:
    logging.warning("%s: skipped %d unreadable images.", name, report.unreadable_images)
  malformed = len(report.skipped) - report.unreadable_images
  if malformed:
    logging.warning(
        "%s: skipped %d malformed annotations (on_bad_annotation='skip'), e.g. %s",
        name,
        malformed,
        "; ".join([entry for entry in report.skipped if "unreadable image" not in entry][:5]),
    )


def bad_annotation(message: str, on_bad: str, report: AnnotationReport) -> None:
  """Raises AnnotationError, or records the problem as skipped."""
  if on_bad == "raise":
    raise AnnotationError(
        message + " (set config.detection.on_bad_annotation='skip' to skip "
        "such annotations; they are counted and logged)"
    )
  report.skipped.append(message)


def sanitize_boxes(
    boxes: np.ndarray, height: int, width: int, where: str, on_bad: str, report: AnnotationReport
) -> np.ndarray:
  """Indices of the usable boxes after clipping `boxes` (changed in place) to the image."""
  keep = []
  for index, box in enumerate(boxes):
    x1, y1, x2, y2 = box
    if not np.all(np.isfinite(box)):
      bad_annotation(f"{where}: object {index} has a non-finite box {box.tolist()}", on_bad, report)
      continue
    if x2 <= x1 or y2 <= y1:
      bad_annotation(
          f"{where}: object {index} has an empty or inverted box {box.tolist()} "
          "(x1, y1, x2, y2)",
          on_bad,
          report,
      )
      continue
    clipped = np.array(
        [
            min(max(x1, 0), width),
            min(max(y1, 0), height),
            min(max(x2, 0), width),
            min(max(y2, 0), height),
        ],
        boxes.dtype,
    )
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
      bad_annotation(
          f"{where}: object {index} box {box.tolist()} lies outside the " f"{width}x{height} image",
          on_bad,
          report,
      )
      continue
    if not np.array_equal(clipped, box):
      report.clipped_boxes += 1
      boxes[index] = clipped
    keep.append(index)
  return np.asarray(keep, np.int64)


class DetectionSplit(abc.ABC):
  """One split: `annotations[i]` describes image i; pixels are read on demand."""

  class_names: tuple[str, ...]
  annotations: list[Annotation]
  report: AnnotationReport

  def __len__(self) -> int:
    return len(self.annotations)

  @abc.abstractmethod
  def image(self, index: int) -> np.ndarray:
    """uint8 RGB [H, W, 3]."""

  @abc.abstractmethod
  def encoded(self, index: int) -> bytes:
    """The image as PNG or JPEG bytes (what region records store)."""

  def ground_truths(self) -> list[metrics.GroundTruth]:
    return [a.ground_truth() for a in self.annotations]


def decode_image_bytes(data: bytes, where: str) -> np.ndarray:
  from PIL import Image

  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))
  except Exception as error:
    raise ValueError(
        f"{where}: cannot decode the image ({type(error).__name__}: {error})"
    ) from error


def encode_png(image: np.ndarray) -> bytes:
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


class TfdsSplit(DetectionSplit):
  """A TFDS detection dataset, read once; images kept in memory as PNG (lossless, compact).

  TFDS decodes the images: its skip-decoding path re-validates every example while encoding
  under tfds.testing.mock_data, so decoding here keeps one code path for real and mocked data.
  """

  def __init__(self, name: str, split: str, data_dir, on_bad: str, max_images: int = -1):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    objects = features["objects"] if "objects" in features else None
    if not (
        "image" in features and objects is not None and "bbox" in objects and "label" in objects
    ):
      raise ValueError(
          f"detection dataset 'tfds:{name}' needs an 'image' feature and "
          f"'objects' with 'bbox' and 'label'; it has {features}"
      )
    self.class_names = tuple(objects["label"].names)
    if not builder.is_prepared():
      builder.download_and_prepare()
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    if max_images > 0:
      dataset = dataset.take(max_images)
    self.report = AnnotationReport()
    self.annotations, self._encoded = [], []
    for index, example in enumerate(dataset.as_numpy_iterator()):
      where = f"tfds:{name} split {split!r} example {index}"
      if "image/filename" in example:
        where += f" ({example['image/filename'].decode()})"
      annotation = tfds_annotation(
          example,
          where,
          on_bad,
          self.report,
          image_id=f"{split}/{index}",
          num_classes=len(self.class_names),
      )
      if annotation is not None:
        self.annotations.append(annotation)
        self._encoded.append(encode_png(example["image"]))

  def image(self, index: int) -> np.ndarray:
    return decode_image_bytes(self._encoded[index], self.annotations[index].image_id)

  def encoded(self, index: int) -> bytes:
    return self._encoded[index]


def tfds_annotation(
    example: dict,
    where: str,
    on_bad: str,
    report: AnnotationReport,
    *,
    image_id: str,
    num_classes: int,
) -> Annotation | None:
  """One TFDS example (numpy, decoded image) -> Annotation, or None when skipped.

  TFDS detection boxes are [ymin, xmin, ymax, xmax] normalised by the image size (VOC's are
  ((ymin - 1) / H, (xmin - 1) / W, ymax / H, xmax / W), so times the size they are exactly
  the continuous convention here).
  """
  height, width = np.asarray(example["image"]).shape[:2]
  objects = example["objects"]
  bbox = np.asarray(objects["bbox"], np.float64).reshape(-1, 4)
  labels = np.asarray(objects["label"], np.int64).reshape(-1)
  difficult = np.asarray(objects.get("is_difficult", np.zeros(len(labels), bool)), bool).reshape(-1)
  if not len(bbox) == len(labels) == len(difficult):
    bad_annotation(
        f"{where}: objects have {len(bbox)} boxes, {len(labels)} labels and "
        f"{len(difficult)} difficult flags",
        on_bad,
        report,
    )
    return None
  boxes = bbox[:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float64)
  keep = sanitize_boxes(boxes, height, width, where, on_bad, report)
  in_range = (labels[keep] >= 0) & (labels[keep] < num_classes)
  for index in keep[~in_range]:
    bad_annotation(
        f"{where}: object {index} has label {labels[index]} outside " f"[0, {num_classes})",
        on_bad,
        report,
    )
  keep = keep[in_range]
  return Annotation(
      image_id,
      int(height),
      int(width),
      boxes[keep].astype(np.float32),
      labels[keep],
      difficult[keep],
  )


def tfds_from_config(name: str, config, split: str, max_images: int) -> TfdsSplit:
  """The 'tfds:<name>' dataset (registered below)."""
  return TfdsSplit(name, split, config.data_dir, config.on_bad_annotation, max_images)


# kind -> factory(argument, detection section, split, max_images) -> DetectionSplit. Built-ins
# are named by strings (imported on first use): this module never imports its implementations.
DATASETS: Registry = Registry(
    "config.detection.dataset kind",
    "detection.datasets.register_dataset",
    {
        "synthetic": "detection.synthetic:from_config",
        "tfds": "detection.datasets:tfds_from_config",
        "voc": "detection.voc:from_config",
    },
)
_TAKES_ARGUMENT = {"synthetic": False, "tfds": True, "voc": True}


def register_dataset(kind: str, factory, takes_argument: bool = True) -> None:
  """Makes `config.detection.dataset='<kind>:<argument>'` load splits with
  `factory(argument, detection_section, split, max_images)`; a "module:function" string is
  imported on first use."""
  DATASETS.register(kind, factory)
  _TAKES_ARGUMENT[kind] = takes_argument


def load_split(config, split: str, max_images: int = -1) -> DetectionSplit:
  """The split named `split` of the dataset `config.dataset` (a `detection` config section)."""
  kind, _, argument = config.dataset.partition(":")
  if config.on_bad_annotation not in ON_BAD_ANNOTATION:
    raise ValueError(
        f"config.detection.on_bad_annotation={config.on_bad_annotation!r}: "
        f"expected one of {ON_BAD_ANNOTATION}"
    )
  if kind not in DATASETS or bool(argument) != _TAKES_ARGUMENT[kind]:
    forms = ", ".join(
        repr(f"{name}:<...>" if _TAKES_ARGUMENT[name] else name) for name in DATASETS.names()
    )
    raise ValueError(
        f"config.detection.dataset={config.dataset!r}: expected one of {forms} "
        "(e.g. 'tfds:voc/2007', 'voc:<VOCdevkit/VOC2007>')"
    )
  return DATASETS.get(kind)(argument, config, split, max_images)


def duplicate_images(splits: dict[str, DetectionSplit]) -> list[tuple[str, str]]:
  """Pairs ('split/image_id', 'split/image_id') of byte-identical image files, within a split
  or across splits (the same photo in train and test inflates the test score)."""
  first_seen, pairs = {}, []
  for name, split in splits.items():
    for index, annotation in enumerate(split.annotations):
      digest = hashlib.sha1(split.encoded(index)).hexdigest()
      where = f"{name}/{annotation.image_id}"
      if digest in first_seen:
        pairs.append((first_seen[digest], where))
      else:
        first_seen[digest] = where
  return pairs


def class_names_of(splits: Sequence[DetectionSplit]) -> tuple[str, ...]:
  names = {split.class_names for split in splits}
  if len(names) != 1:
    raise ValueError(f"splits disagree on the class names: {sorted(names)}")
  return names.pop()
