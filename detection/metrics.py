"""Detection metrics in NumPy: PASCAL VOC AP (2007 11-point, 2010+ all-point), COCO AP50, recall.

The rules (docs/paper_notes.md, "Detection metrics") differ where it matters:

* VOC (devkit `VOCevaldet.m`): per class, detections of all images sorted by descending score
  (stable); each takes the ground truth of *highest* IoU in its image (first one on ties).
  IoU >= 0.5 (the devkit's `ovmax >= minoverlap`; the Python port `voc_eval.py` uses a strict
  `>`) and that box unmatched and not difficult: TP; matched to a difficult box: ignored;
  otherwise FP, so a duplicate is an FP even when another unmatched box overlaps it enough.
  Boxes are 1-based inclusive pixel indices, widths x2 - x1 + 1. Recall is over non-difficult
  boxes. AP: VOC2007 averages the max precision at recall >= t over t in {0, 0.1, ..., 1};
  VOC2010+ integrates the monotone (right-to-left max) precision envelope over all recalls.
* COCO (`pycocotools` COCOeval, bbox, area 'all'): per image and class, at most `max_dets`
  highest-scoring detections; greedily in score order each takes the best *unmatched* ground
  truth with IoU >= t, preferring non-ignored ones (a difficult box is treated like COCO's
  ignore flag: a detection matched to it counts neither way); no +1 in widths; AP is the mean
  over the 101 recall thresholds 0, 0.01, ..., 1 of the precision envelope at the first recall
  >= threshold (0 past the highest recall reached).

Both give NaN for a class without (non-difficult) ground truth, and mAP averages the classes
that have some. A class with ground truth but no detection has AP 0.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses

import numpy as np

from detection import boxes as box_ops

COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """One image's annotation: boxes [N, 4] (continuous), 0-based labels [N], difficult [N]."""

  boxes: np.ndarray
  labels: np.ndarray
  difficult: np.ndarray

  @classmethod
  def create(cls, boxes, labels, difficult=None) -> GroundTruth:
    boxes = box_ops.as_boxes(boxes)
    labels = np.asarray(labels, np.int64).reshape(-1)
    difficult = (
        np.zeros(len(labels), bool)
        if difficult is None
        else np.asarray(difficult, bool).reshape(-1)
    )
    if not len(boxes) == len(labels) == len(difficult):
      raise ValueError(
          f"{len(boxes)} boxes, {len(labels)} labels, {len(difficult)} difficult flags"
      )
    return cls(boxes, labels, difficult)


@dataclasses.dataclass(frozen=True)
class Detections:
  """All detections of a split: image_index [D], 0-based labels [D], scores [D], boxes [D, 4]."""

  image_index: np.ndarray
  labels: np.ndarray
  scores: np.ndarray
  boxes: np.ndarray

  @classmethod
  def create(cls, image_index, labels, scores, boxes) -> Detections:
    image_index = np.asarray(image_index, np.int64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    boxes = box_ops.as_boxes(boxes)
    if not len(image_index) == len(labels) == len(scores) == len(boxes):
      raise ValueError("image_index, labels, scores and boxes must have the same length")
    return cls(image_index, labels, scores, boxes)

  @classmethod
  def empty(cls) -> Detections:
    return cls.create([], [], [], np.zeros((0, 4)))

  def of_class(self, label: int) -> Detections:
    keep = self.labels == label
    return Detections(
        self.image_index[keep], self.labels[keep], self.scores[keep], self.boxes[keep]
    )


def voc_ap(recall, precision, use_07_metric: bool) -> float:
  """AP from a precision/recall curve (detections in score order), as the VOC devkit."""
  recall = np.asarray(recall, np.float64)
  precision = np.asarray(precision, np.float64)
  if use_07_metric:
    ap = 0.0
    for threshold in np.linspace(0.0, 1.0, 11):
      reached = precision[recall >= threshold]
      ap += (reached.max() if reached.size else 0.0) / 11.0
    return float(ap)
  padded_recall = np.concatenate([[0.0], recall, [1.0]])
  envelope = np.concatenate([[0.0], precision, [0.0]])
  envelope = np.maximum.accumulate(envelope[::-1])[::-1]
  changes = np.flatnonzero(padded_recall[1:] != padded_recall[:-1]) + 1
  return float(np.sum((padded_recall[changes] - padded_recall[changes - 1]) * envelope[changes]))


def coco_ap(recall, precision) -> float:
  """pycocotools' 101-point interpolated AP (COCOeval.accumulate) from one class's curve."""
  recall = np.asarray(recall, np.float64)
  if not len(recall):
    return 0.0
  envelope = np.maximum.accumulate(np.asarray(precision, np.float64)[::-1])[::-1]
  index = np.searchsorted(recall, COCO_RECALL_THRESHOLDS, side="left")
  reached = index < len(recall)
  sampled = np.zeros_like(COCO_RECALL_THRESHOLDS)
  sampled[reached] = envelope[index[reached]]
  return float(np.mean(sampled))


def voc_precision_recall(
    detections: Detections,
    ground_truths: Sequence[GroundTruth],
    label: int,
    iou_threshold: float = 0.5,
    pixel_inclusive: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
  """(recall, precision, number of non-difficult boxes) of one class under the VOC rules.

  Box coordinates are taken in the convention `pixel_inclusive` names: True for VOC's 1-based
  inclusive pixel indices (the devkit), False for continuous coordinates.
  """
  dets = detections.of_class(label)
  gt_boxes, gt_difficult, gt_taken = {}, {}, {}
  num_positive = 0
  for index, gt in enumerate(ground_truths):
    mine = gt.labels == label
    gt_boxes[index], gt_difficult[index] = gt.boxes[mine], gt.difficult[mine]
    gt_taken[index] = np.zeros(int(mine.sum()), bool)
    num_positive += int((~gt.difficult[mine]).sum())
  order = np.argsort(-dets.scores, kind="stable")
  outcome = []  # 1 TP, 0 FP; ignored detections (difficult matches) are left out
  for d in order:
    image = int(dets.image_index[d])
    candidates = gt_boxes.get(image)
    if candidates is None:
      raise ValueError(
          f"detection on image {image}, but only {len(ground_truths)} images have " "ground truth"
      )
    if len(candidates) == 0:
      outcome.append(0)
      continue
    overlaps = box_ops.iou_matrix(dets.boxes[d : d + 1], candidates, pixel_inclusive)[0]
    best = int(np.argmax(overlaps))  # first maximum, like the devkit's strict `ov > ovmax`
    if overlaps[best] >= iou_threshold:
      if gt_difficult[image][best]:
        continue
      if not gt_taken[image][best]:
        gt_taken[image][best] = True
        outcome.append(1)
      else:
        outcome.append(0)
    else:
      outcome.append(0)
  true_positives = np.cumsum(np.asarray(outcome, np.float64))
  false_positives = np.cumsum(1.0 - np.asarray(outcome, np.float64))
  recall = true_positives / num_positive if num_positive else np.full_like(true_positives, np.nan)
  precision = true_positives / np.maximum(
      true_positives + false_positives, np.finfo(np.float64).eps
  )
  return recall, precision, num_positive


def coco_precision_recall(
    detections: Detections,
    ground_truths: Sequence[GroundTruth],
    label: int,
    iou_threshold: float = 0.5,
    max_dets: int = 100,
) -> tuple[np.ndarray, np.ndarray, int]:
  """(recall, precision, number of non-ignored boxes) of one class under COCOeval's rules."""
  dets = detections.of_class(label)
  threshold = min(iou_threshold, 1 - 1e-10)
  scores, matched, ignored = [], [], []
  num_positive = 0
  for image, gt in enumerate(ground_truths):
    mine = gt.labels == label
    gt_ignore = gt.difficult[mine]
    gt_order = np.argsort(gt_ignore, kind="stable")  # non-ignored ground truth first
    candidates, gt_ignore = gt.boxes[mine][gt_order], gt_ignore[gt_order]
    num_positive += int((~gt_ignore).sum())
    in_image = np.flatnonzero(dets.image_index == image)
    in_image = in_image[np.argsort(-dets.scores[in_image], kind="stable")][:max_dets]
    if not len(in_image):
      continue
    overlaps = box_ops.iou_matrix(dets.boxes[in_image], candidates)
    taken = np.zeros(len(candidates), bool)
    for row, d in enumerate(in_image):
      best_iou, match = threshold, -1
      for g in range(len(candidates)):
        if taken[g]:
          continue
        if match > -1 and not gt_ignore[match] and gt_ignore[g]:
          break  # a non-ignored match is never traded for an ignored one
        if overlaps[row, g] < best_iou:
          continue
        best_iou, match = overlaps[row, g], g
      scores.append(dets.scores[d])
      matched.append(match > -1)
      ignored.append(match > -1 and bool(gt_ignore[match]))
      if match > -1:
        taken[match] = True
  stray = np.setdiff1d(dets.image_index, np.arange(len(ground_truths)))
  if stray.size:
    raise ValueError(
        f"detection on image {stray[0]}, but only {len(ground_truths)} images have " "ground truth"
    )
  order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
  matched, ignored = np.asarray(matched, bool)[order], np.asarray(ignored, bool)[order]
  true_positives = np.cumsum(matched & ~ignored).astype(np.float64)
  false_positives = np.cumsum(~matched & ~ignored).astype(np.float64)
  keep = ~ignored
  true_positives, false_positives = true_positives[keep], false_positives[keep]
  recall = true_positives / num_positive if num_positive else np.full_like(true_positives, np.nan)
  precision = true_positives / (true_positives + false_positives + np.spacing(1))
  return recall, precision, num_positive


@dataclasses.dataclass(frozen=True)
class ClassAP:
  name: str
  num_gt: int  # non-difficult ground-truth boxes
  num_detections: int
  voc07: float  # NaN when num_gt == 0
  voc10: float
  coco_ap50: float


@dataclasses.dataclass(frozen=True)
class DetectionMetrics:
  per_class: tuple[ClassAP, ...]
  map_voc07: float
  map_voc10: float
  map_coco_ap50: float

  def to_dict(self) -> dict:
    def clean(value):
      return None if isinstance(value, float) and np.isnan(value) else value

    return {
        "mAP_voc07": clean(self.map_voc07),
        "mAP_voc10": clean(self.map_voc10),
        "mAP_coco_ap50": clean(self.map_coco_ap50),
        "per_class": [
            {k: clean(v) for k, v in dataclasses.asdict(c).items()} for c in self.per_class
        ],
    }


def _mean_over_classes_with_gt(values: list[float]) -> float:
  present = [v for v in values if not np.isnan(v)]
  return float(np.mean(present)) if present else float("nan")


def voc_curves(
    detections: Detections,
    ground_truths: Sequence[GroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> list[tuple[np.ndarray, np.ndarray, int]]:
  """Every class's VOC (recall, precision, number of non-difficult boxes) from continuous boxes:
  the curves whose VOC07 and VOC10+ APs `evaluate_detections` reports (and the report plots)."""
  voc_dets = Detections(
      detections.image_index,
      detections.labels,
      detections.scores,
      box_ops.continuous_to_voc(detections.boxes),
  )
  voc_gts = [
      GroundTruth(box_ops.continuous_to_voc(g.boxes), g.labels, g.difficult) for g in ground_truths
  ]
  return [
      voc_precision_recall(voc_dets, voc_gts, label, iou_threshold, pixel_inclusive=True)
      for label in range(num_classes)
  ]


def evaluate_detections(
    detections: Detections,
    ground_truths: Sequence[GroundTruth],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    coco_max_dets: int = 100,
) -> DetectionMetrics:
  """Per-class VOC07 / VOC10+ / COCO AP50 and their mAPs; boxes in continuous coordinates.

  VOC is computed on boxes converted to its 1-based inclusive convention with the devkit's +1
  widths (the same IoU as the continuous one, see `voc_curves`); COCO on the continuous boxes as
  given.
  """
  per_class = []
  curves = voc_curves(detections, ground_truths, len(class_names), iou_threshold)
  for label, (name, (recall, precision, num_gt)) in enumerate(zip(class_names, curves)):
    if num_gt:
      voc07, voc10 = voc_ap(recall, precision, True), voc_ap(recall, precision, False)
    else:
      voc07 = voc10 = float("nan")
    recall, precision, num_gt_coco = coco_precision_recall(
        detections, ground_truths, label, iou_threshold, coco_max_dets
    )
    ap50 = coco_ap(recall, precision) if num_gt_coco else float("nan")
    per_class.append(
        ClassAP(name, num_gt, int((detections.labels == label).sum()), voc07, voc10, ap50)
    )
  return DetectionMetrics(
      tuple(per_class),
      _mean_over_classes_with_gt([c.voc07 for c in per_class]),
      _mean_over_classes_with_gt([c.voc10 for c in per_class]),
      _mean_over_classes_with_gt([c.coco_ap50 for c in per_class]),
  )


def proposal_recall(
    proposals: Sequence[np.ndarray],
    ground_truths: Sequence[GroundTruth],
    iou_threshold: float = 0.5,
    include_difficult: bool = False,
) -> tuple[float, int]:
  """(share of ground-truth boxes with a proposal of IoU >= threshold, number of boxes)."""
  covered = total = 0
  for boxes, gt in zip(proposals, ground_truths, strict=True):
    wanted = gt.boxes if include_difficult else gt.boxes[~gt.difficult]
    total += len(wanted)
    covered += covered_boxes(wanted, boxes, iou_threshold)
  return (covered / total if total else float("nan")), total


def covered_boxes(truth: np.ndarray, proposals: np.ndarray, iou_threshold: float = 0.5) -> int:
  """How many of the `truth` boxes have a proposal at IoU >= iou_threshold."""
  if not len(truth) or not len(proposals):
    return 0
  return int((box_ops.iou_matrix(truth, proposals).max(axis=1) >= iou_threshold).sum())
