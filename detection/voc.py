"""PASCAL VOC folders: Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt.

The devkit layout (VOCdevkit/VOC2007 and friends). Boxes in the XML are 1-based inclusive
pixel indices and become continuous [xmin - 1, ymin - 1, xmax, ymax] (boxes.voc_to_continuous).
Boxes are clipped to the image's real size, read from the image file's header (<size> in the
XML is not trusted).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree

from absl import logging
import numpy as np

from detection import boxes as box_ops
from detection import datasets

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _text(element, tag: str, path: str) -> str:
  child = element.find(tag)
  if child is None or child.text is None or not child.text.strip():
    raise ValueError(f"{path}: <{element.tag}> has no <{tag}>")
  return child.text.strip()


def parse_annotation(
    path: str,
    class_names: tuple[str, ...],
    height: int,
    width: int,
    on_bad: str,
    report: datasets.AnnotationReport,
) -> datasets.Annotation | None:
  """One VOC XML file -> Annotation (boxes clipped to height x width), None when skipped."""
  image_id = os.path.splitext(os.path.basename(path))[0]
  try:
    root = ElementTree.parse(path).getroot()
  except (ElementTree.ParseError, OSError) as error:
    datasets.bad_annotation(f"{path}: malformed annotation file ({error})", on_bad, report)
    return None
  boxes, labels, difficult = [], [], []
  for index, obj in enumerate(root.findall("object")):
    where = f"{path}: object {index}"
    try:
      name = _text(obj, "name", path)
      box = obj.find("bndbox")
      if box is None:
        raise ValueError(f"{where} ({name}) has no <bndbox>")
      coordinates = [float(_text(box, tag, path)) for tag in ("xmin", "ymin", "xmax", "ymax")]
      is_difficult = obj.find("difficult") is not None and _text(obj, "difficult", path) == "1"
    except ValueError as error:
      datasets.bad_annotation(f"{where}: {error}", on_bad, report)
      continue
    if name not in class_names:
      datasets.bad_annotation(
          f"{where}: unknown class {name!r} (classes: {', '.join(class_names)};"
          " set config.detection.class_names)",
          on_bad,
          report,
      )
      continue
    boxes.append(coordinates)
    labels.append(class_names.index(name))
    difficult.append(is_difficult)
  boxes = box_ops.voc_to_continuous(boxes)
  keep = datasets.sanitize_boxes(boxes, height, width, path, on_bad, report)
  return datasets.Annotation(
      image_id,
      height,
      width,
      boxes[keep].astype(np.float32),
      np.asarray(labels, np.int64).reshape(-1)[keep],
      np.asarray(difficult, bool).reshape(-1)[keep],
  )


def _decoded_size(path: str) -> tuple[str | None, tuple[int, int]]:
  """(problem or None, (width, height)): the image is decoded through to its last byte, at a
  reduced scale for JPEGs (PIL's draft mode still walks the whole compressed stream), so a
  truncated file is found here and not in the middle of a later phase."""
  from PIL import Image

  try:
    with Image.open(path) as image:
      size = image.size
      image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
      image.load()
  except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... per format
    return f"{type(error).__name__}: {error}", (0, 0)
  return None, size


class VocFolderSplit(datasets.DetectionSplit):

  def __init__(
      self, root: str, split: str, class_names: tuple[str, ...], on_bad: str, max_images: int = -1
  ):
    self.root = os.path.abspath(os.path.expanduser(root))
    self.class_names = tuple(class_names)
    self.report = datasets.AnnotationReport()
    list_file = os.path.join(self.root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(list_file):
      main = os.path.join(self.root, "ImageSets", "Main")
      available = (
          sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt") and "_" not in f)
          if os.path.isdir(main)
          else []
      )
      raise FileNotFoundError(
          f"VOC folder {self.root}: no split list {list_file} (splits found: "
          f"{available or 'none'}); expected Annotations/, JPEGImages/ and "
          "ImageSets/Main/<split>.txt"
      )
    with open(list_file) as f:
      image_ids = [line.split()[0] for line in f if line.strip()]
    if max_images > 0:
      image_ids = image_ids[:max_images]
    self.annotations, self._paths = [], []
    for image_id in image_ids:
      image_path = self._image_path(image_id)
      problem, size = _decoded_size(image_path)
      if problem:
        # Not an annotation problem: skipped whatever on_bad_annotation says, named and counted,
        # so no later phase (proposals, regions, scoring) meets it.
        logging.warning("Skipping %s: unreadable image (%s).", image_path, problem)
        self.report.skipped.append(f"{image_path}: unreadable image ({problem})")
        self.report.unreadable_images += 1
        continue
      width, height = size
      xml_path = os.path.join(self.root, "Annotations", f"{image_id}.xml")
      annotation = parse_annotation(xml_path, self.class_names, height, width, on_bad, self.report)
      if annotation is not None:
        self.annotations.append(annotation)
        self._paths.append(image_path)

  def _image_path(self, image_id: str) -> str:
    for extension in IMAGE_EXTENSIONS:
      path = os.path.join(self.root, "JPEGImages", image_id + extension)
      if os.path.exists(path):
        return path
    return os.path.join(self.root, "JPEGImages", image_id + ".jpg")  # reported as unreadable

  def image(self, index: int) -> np.ndarray:
    return datasets.decode_image_bytes(self.encoded(index), self._paths[index])

  def encoded(self, index: int) -> bytes:
    with open(self._paths[index], "rb") as f:
      return f.read()


def from_config(root: str, config, split: str, max_images: int) -> VocFolderSplit:
  """The 'voc:<root>' dataset (registered in datasets.py); class names default to PASCAL's."""
  return VocFolderSplit(
      root, split, tuple(config.class_names) or VOC_CLASSES, config.on_bad_annotation, max_images
  )
