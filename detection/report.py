"""Detection outputs: a Markdown AP table, every detection as JSON, PNGs with boxes drawn."""

from __future__ import annotations

from collections.abc import Sequence
import json
import math
import os

import numpy as np

from detection import metrics

BOX_FORMAT = (
    "[x1, y1, x2, y2] in continuous pixel coordinates: 0-based, x2/y2 exclusive "
    "(width = x2 - x1); PASCAL VOC's 1-based inclusive box is [x1 + 1, y1 + 1, x2, y2]"
)
_GT_COLOUR = (0, 255, 0)
_CLASS_COLOURS = (
    (255, 60, 60),
    (60, 140, 255),
    (255, 200, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 128, 0),
    (160, 80, 255),
    (255, 255, 255),
)


def _fmt(value: float) -> str:
  return (
      "n/a"
      if value is None or (isinstance(value, float) and math.isnan(value))
      else f"{100 * value:.1f}"
  )


def markdown_table(
    result: metrics.DetectionMetrics, *, title: str, notes: Sequence[str] = ()
) -> str:
  lines = [
      f"# {title}",
      "",
      "| class | GT boxes | detections | AP VOC07 (11-pt) | AP VOC10+ (all-pt) | AP50 COCO (101-pt) |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  for c in result.per_class:
    lines.append(
        f"| {c.name} | {c.num_gt} | {c.num_detections} | {_fmt(c.voc07)} | "
        f"{_fmt(c.voc10)} | {_fmt(c.coco_ap50)} |"
    )
  lines.append(
      f"| **mAP** | {sum(c.num_gt for c in result.per_class)} | "
      f"{sum(c.num_detections for c in result.per_class)} | **{_fmt(result.map_voc07)}** | "
      f"**{_fmt(result.map_voc10)}** | **{_fmt(result.map_coco_ap50)}** |"
  )
  lines += [
      "",
      "AP in percent at IoU 0.5; mAP over the classes that have ground truth "
      "(GT boxes: non-difficult).",
  ]
  lines += [""] + [f"- {note}" for note in notes]
  return "\n".join(lines) + "\n"


def write_detections_json(
    path: str, detections: metrics.Detections, split, class_names, extra: dict
) -> None:
  records = [
      {
          "image_id": split.annotations[int(i)].image_id,
          "image_index": int(i),
          "label": int(label),
          "class": class_names[int(label)],
          "score": round(float(score), 6),
          "bbox": [round(float(v), 2) for v in box],
      }
      for i, label, score, box in zip(
          detections.image_index, detections.labels, detections.scores, detections.boxes
      )
  ]
  with open(path, "w") as f:
    json.dump(
        {
            "box_format": BOX_FORMAT,
            "class_names": list(class_names),
            **extra,
            "detections": records,
        },
        f,
    )


def draw_detections(
    image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    class_names,
    min_size: int = 384,
    note: str | None = None,
):
  """PIL image: ground truth in green, predictions coloured by class with 'name score', each
  label on a dark band and in a font sized to the picture, so it reads on photos too; `note`
  in white at the bottom left."""
  from PIL import Image, ImageDraw, ImageFont

  scale = max(1, int(math.ceil(min_size / max(image.shape[:2]))))
  picture = Image.fromarray(image).resize(
      (image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST
  )
  draw = ImageDraw.Draw(picture)
  font = ImageFont.load_default(size=max(11, picture.height // 32))
  line = max(2, picture.height // 200)

  def label(xy, text, colour):
    band = draw.textbbox(xy, text, font=font)
    draw.rectangle([band[0] - 2, band[1] - 1, band[2] + 2, band[3] + 1], fill=(0, 0, 0))
    draw.text(xy, text, fill=colour, font=font)

  for box in gt_boxes:
    draw.rectangle([v * scale for v in box], outline=_GT_COLOUR, width=line)
  for box, class_index in zip(boxes, labels):
    colour = _CLASS_COLOURS[int(class_index) % len(_CLASS_COLOURS)]
    draw.rectangle([v * scale for v in box], outline=colour, width=line)
  # Labels last, above every box outline.
  for box, gt_label in zip(gt_boxes, gt_labels):
    label(
        (box[0] * scale + 3, box[3] * scale - font.size - 4),
        f"GT {class_names[gt_label]}",
        _GT_COLOUR,
    )
  for box, class_index, score in zip(boxes, labels, scores):
    colour = _CLASS_COLOURS[int(class_index) % len(_CLASS_COLOURS)]
    label(
        (box[0] * scale + 3, box[1] * scale + 2), f"{class_names[class_index]} {score:.2f}", colour
    )
  if note:
    label((3, picture.height - font.size - 6), note, (255, 255, 255))
  return picture


def shown_detections(
    detections: metrics.Detections, image_index: int, min_score: float, max_boxes: int
) -> np.ndarray:
  """Indices of one image's detections to draw: the `max_boxes` most confident >= min_score."""
  candidates = np.flatnonzero(
      (detections.image_index == image_index) & (detections.scores >= min_score)
  )
  return candidates[np.argsort(-detections.scores[candidates], kind="stable")[:max_boxes]]


def nothing_shown_note(
    detections: metrics.Detections, image_index: int, min_score: float
) -> str | None:
  """Why a picture shows no detection (none reach `min_score`), None when one does."""
  scores = detections.scores[detections.image_index == image_index]
  if len(scores) and scores.max() >= min_score:
    return None
  best = f" (best {scores.max():.2f})" if len(scores) else ""
  return f"no detection scores >= {min_score:.2f}{best}"


def write_visualisations(
    directory: str,
    split,
    detections: metrics.Detections,
    class_names,
    count: int,
    min_score: float,
    max_boxes: int = 5,
) -> list[str]:
  """The first `count` images with their ground truth (green) and their `max_boxes` most
  confident detections scoring at least `min_score`."""
  os.makedirs(directory, exist_ok=True)
  paths = []
  for index in range(min(count, len(split))):
    annotation = split.annotations[index]
    mine = shown_detections(detections, index, min_score, max_boxes)
    picture = draw_detections(
        split.image(index),
        annotation.boxes,
        annotation.labels,
        detections.boxes[mine],
        detections.labels[mine],
        detections.scores[mine],
        class_names,
        note=nothing_shown_note(detections, index, min_score),
    )
    path = os.path.join(directory, f"{annotation.image_id.replace('/', '_')}.png")
    picture.save(path)
    paths.append(path)
  return paths
