"""VOC07 / VOC10+ / COCO AP50 on hand-made cases, including those where the rules disagree."""

import numpy as np
import pytest

from detection import metrics, precision_recall_figure
from detection.metrics import Detections, GroundTruth
from tests.png_checks import assert_picture


def dets(rows):
  """rows: (image, label, score, box)."""
  if not rows:
    return Detections.empty()
  image, label, score, box = zip(*rows)
  return Detections.create(image, label, score, box)


def all_aps(detections, ground_truths, label=0, pixel_inclusive=True, max_dets=100):
  recall, precision, _ = metrics.voc_precision_recall(
      detections, ground_truths, label, pixel_inclusive=pixel_inclusive
  )
  voc07, voc10 = metrics.voc_ap(recall, precision, True), metrics.voc_ap(recall, precision, False)
  recall, precision, _ = metrics.coco_precision_recall(
      detections, ground_truths, label, max_dets=max_dets
  )
  return voc07, voc10, metrics.coco_ap(recall, precision)


def test_ap_definitions_on_one_curve():
  # TP, FP, TP with 3 positives: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3.
  recall = np.array([1, 1, 2]) / 3
  precision = np.array([1, 1 / 2, 2 / 3])
  # All-point: 1/3 * 1 + 1/3 * 2/3 (the envelope at recall 2/3), nothing past 2/3.
  assert metrics.voc_ap(recall, precision, False) == pytest.approx(1 / 3 + 2 / 9)
  # 11-point: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t >= .7 -> 0.
  assert metrics.voc_ap(recall, precision, True) == pytest.approx((4 + 3 * 2 / 3) / 11)
  # 101-point: t <= 1/3 (34 thresholds: 0 .. 0.33) -> 1; 0.34 .. 0.66 (33) -> 2/3; rest 0.
  assert metrics.coco_ap(recall, precision) == pytest.approx((34 + 33 * 2 / 3) / 101)


def test_duplicate_whose_best_match_is_taken_voc_fp_coco_tp():
  # Two ground-truth boxes A and B. The second detection overlaps A best (IoU 0.69), but A is
  # already taken; it overlaps B with IoU 0.57 too. VOC: FP (duplicate). COCO: TP on B.
  ground_truths = [GroundTruth.create([[0, 0, 10, 10], [5, 0, 15, 10]], [0, 0])]
  detections = dets([(0, 0, 0.9, [0, 0, 10, 10]), (0, 0, 0.8, [2, 0, 12, 10])])
  voc07, voc10, coco = all_aps(detections, ground_truths)
  # VOC: TP, FP over 2 positives -> recall .5, .5; precision 1, .5.
  assert voc10 == pytest.approx(0.5)
  assert voc07 == pytest.approx(6 / 11)  # t = 0 .. 0.5 reach precision 1
  assert coco == pytest.approx(1.0)  # TP, TP
  # With no other ground truth to take, a duplicate is an FP under both rules.
  single = [GroundTruth.create([[0, 0, 10, 10]], [0])]
  voc07, voc10, coco = all_aps(detections, single)
  assert (voc10, coco) == pytest.approx((1.0, 1.0))  # the TP comes first
  reversed_scores = dets([(0, 0, 0.8, [0, 0, 10, 10]), (0, 0, 0.9, [2, 0, 12, 10])])
  recall, precision, _ = metrics.coco_precision_recall(reversed_scores, single, 0)
  np.testing.assert_allclose(precision, [1.0, 0.5])  # second match on the same box: FP


def test_difficult_ground_truth():
  # N is normal, D difficult; the detection overlaps D (IoU 0.9) more than N (IoU 0.6).
  ground_truths = [GroundTruth.create([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0], [False, True])]
  detection = dets([(0, 0, 0.9, [1.5, 0, 11.5, 10])])
  assert metrics.voc_precision_recall(detection, ground_truths, 0)[2] == 1  # D not counted
  voc07, voc10, coco = all_aps(detection, ground_truths, pixel_inclusive=False)
  # VOC takes the highest IoU (D): ignored, and N is never found. COCO prefers the
  # non-ignored N (IoU >= 0.5): TP.
  assert (voc07, voc10) == (0.0, 0.0)
  assert coco == pytest.approx(1.0)
  # A detection matching only the difficult box counts neither way under both rules.
  only_difficult = [
      GroundTruth.create([[2, 0, 12, 10]], [0], [True]),
      GroundTruth.create([[0, 0, 10, 10]], [0]),
  ]
  detections = dets([(0, 0, 0.95, [2, 0, 12, 10]), (1, 0, 0.9, [0, 0, 10, 10])])
  assert all_aps(detections, only_difficult) == pytest.approx((1.0, 1.0, 1.0))


def test_ties_at_the_iou_threshold_count_as_matches():
  # IoU exactly 0.5 under each rule's own convention -> TP (devkit ovmax >= 0.5, COCO >= t).
  voc = metrics.voc_precision_recall(
      dets([(0, 0, 0.9, [1, 1, 10, 5])]), [GroundTruth.create([[1, 1, 10, 10]], [0])], 0
  )
  assert voc[0][-1] == 1.0
  coco = metrics.coco_precision_recall(
      dets([(0, 0, 0.9, [0, 0, 10, 5])]), [GroundTruth.create([[0, 0, 10, 10]], [0])], 0
  )
  assert coco[0][-1] == 1.0
  # The same VOC numbers without the +1 are IoU 36/81 < 0.5: a miss.
  voc_no_plus_one = metrics.voc_precision_recall(
      dets([(0, 0, 0.9, [1, 1, 10, 5])]),
      [GroundTruth.create([[1, 1, 10, 10]], [0])],
      0,
      pixel_inclusive=False,
  )
  assert voc_no_plus_one[0][-1] == 0.0
  # evaluate_detections takes continuous boxes and converts them for VOC, so the +1 rule
  # never inflates IoU: continuous IoU 0.45 stays a miss (without conversion it would be 0.5).
  result = metrics.evaluate_detections(
      dets([(0, 0, 0.9, [0, 0, 10, 4.5])]), [GroundTruth.create([[0, 0, 10, 10]], [0])], ["a"]
  )
  assert (result.map_voc07, result.map_voc10, result.map_coco_ap50) == (0.0, 0.0, 0.0)


def test_empty_detections_and_classes_without_ground_truth():
  ground_truths = [
      GroundTruth.create([[0, 0, 10, 10]], [0]),
      GroundTruth.create([[0, 0, 5, 5]], [1]),
  ]
  detections = dets(
      [(0, 0, 0.9, [0, 0, 10, 10]), (0, 2, 0.8, [0, 0, 10, 10])]  # class 0: perfect
  )  # class 2 has no ground truth
  result = metrics.evaluate_detections(detections, ground_truths, ["a", "b", "c", "d"])
  by_name = {c.name: c for c in result.per_class}
  assert (by_name["a"].voc07, by_name["a"].voc10, by_name["a"].coco_ap50) == pytest.approx(
      (1, 1, 1)
  )
  assert (by_name["b"].voc07, by_name["b"].voc10, by_name["b"].coco_ap50) == (0.0, 0.0, 0.0)
  assert np.isnan(by_name["c"].voc10) and np.isnan(by_name["c"].coco_ap50)
  assert np.isnan(by_name["d"].voc07)  # neither ground truth nor detections
  # mAP over the classes with ground truth (a and b) only.
  assert (result.map_voc07, result.map_voc10, result.map_coco_ap50) == pytest.approx(
      (0.5, 0.5, 0.5)
  )
  assert result.to_dict()["per_class"][2]["voc10"] is None
  empty = metrics.evaluate_detections(Detections.empty(), ground_truths, ["a", "b"])
  assert (empty.map_voc07, empty.map_voc10, empty.map_coco_ap50) == (0.0, 0.0, 0.0)


def test_coco_keeps_100_detections_per_image_and_class():
  # 100 false positives scored above one true positive: the TP is the 101st and is cut.
  ground_truths = [GroundTruth.create([[0, 0, 10, 10]], [0])]
  rows = [(0, 0, 0.9 - i * 1e-4, [50, 50, 60, 60]) for i in range(100)] + [
      (0, 0, 0.1, [0, 0, 10, 10])
  ]
  detections = dets(rows)
  assert all_aps(detections, ground_truths, max_dets=100)[2] == 0.0
  assert all_aps(detections, ground_truths, max_dets=101)[2] == pytest.approx(1 / 101)
  assert all_aps(detections, ground_truths)[1] == pytest.approx(1 / 101)  # VOC has no cap


def test_detections_pool_over_images_in_score_order():
  ground_truths = [
      GroundTruth.create([[0, 0, 10, 10]], [0]),
      GroundTruth.create([[0, 0, 10, 10]], [0]),
  ]
  detections = dets(
      [(0, 0, 0.5, [0, 0, 10, 10]), (1, 0, 0.9, [30, 30, 40, 40]), (1, 0, 0.4, [0, 0, 10, 10])]
  )
  # Score order: FP (.9), TP (.5), TP (.4): precision 0, 1/2, 2/3 at recall 0, 1/2, 1.
  voc07, voc10, coco = all_aps(detections, ground_truths, pixel_inclusive=False)
  assert voc10 == pytest.approx(2 / 3)
  assert voc07 == pytest.approx(2 / 3)
  assert coco == pytest.approx(2 / 3)


def test_proposal_recall():
  ground_truths = [
      GroundTruth.create([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]),
      GroundTruth.create([[0, 0, 4, 4]], [0], [True]),
  ]
  proposals = [np.array([[0, 0, 10, 5], [21, 20, 30, 30]]), np.zeros((0, 4))]
  assert metrics.proposal_recall(proposals, ground_truths) == (1.0, 2)  # 0.5 counts
  assert metrics.proposal_recall(proposals, ground_truths, 0.6) == (0.5, 2)
  assert metrics.proposal_recall(proposals, ground_truths, include_difficult=True) == (2 / 3, 3)


def test_precision_recall_picture_has_every_class(tmp_path):
  # Class a: TP then FP then TP of 2 boxes; b: ground truth, no detection; c: no ground truth.
  ground_truths = [
      GroundTruth.create([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0]),
      GroundTruth.create([[0, 0, 5, 5]], [1]),
  ]
  detections = dets(
      [
          (0, 0, 0.9, [0, 0, 10, 10]),
          (0, 0, 0.8, [40, 40, 50, 50]),
          (0, 0, 0.7, [20, 20, 30, 30]),
          (1, 2, 0.6, [0, 0, 5, 5]),
      ]
  )
  names = ["a", "b", "c"]
  result = metrics.evaluate_detections(detections, ground_truths, names)
  curves = metrics.voc_curves(detections, ground_truths, len(names))
  recall, precision, num_gt = curves[0]
  np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
  np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
  assert num_gt == 2 and result.per_class[0].voc10 == pytest.approx(
      metrics.voc_ap(recall, precision, False)
  )
  assert [len(c[0]) for c in curves] == [3, 0, 1] and [c[2] for c in curves] == [2, 1, 0]

  path = precision_recall_figure.plot_precision_recall(
      curves, result, str(tmp_path / "pr.png"), title="three classes", iou_threshold=0.5
  )
  assert_picture(path, precision_recall_figure.WIDTH_PX, precision_recall_figure.HEIGHT_PX)
  assert [precision_recall_figure._label(c) for c in result.per_class] == [
      f"a: AP {100 * result.per_class[0].voc10:.1f}, 2 GT",
      "b: AP 0.0, 1 GT, no detections",
      "c: no ground truth",
  ]


def test_pictures_show_only_the_most_confident_detections(tmp_path):
  from detection import report

  scores = np.array([0.9, 0.2, 0.5, 0.8, 0.95, 0.4, 0.7])
  detections = metrics.Detections.create(
      [0, 0, 0, 0, 1, 0, 0], np.zeros(7), scores, np.tile([[1.0, 1.0, 5.0, 5.0]], (7, 1))
  )
  np.testing.assert_array_equal(report.shown_detections(detections, 0, 0.3, 3), [0, 3, 6])
  np.testing.assert_array_equal(report.shown_detections(detections, 0, 0.85, 3), [0])
  picture = report.draw_detections(
      np.zeros((30, 40, 3), np.uint8),
      np.array([[2.0, 2, 20, 20]]),
      np.array([0]),
      detections.boxes[:2],
      detections.labels[:2],
      scores[:2],
      ("thing",),
  )
  assert picture.size == (400, 300)  # scaled up to at least 384 px on the long side
  assert np.asarray(picture).any()
  # A picture with nothing to draw says why, in a band along its bottom.
  assert report.nothing_shown_note(detections, 0, 0.3) is None
  note = report.nothing_shown_note(detections, 0, 0.99)
  assert note == "no detection scores >= 0.99 (best 0.90)"
  assert report.nothing_shown_note(detections, 2, 0.3) == "no detection scores >= 0.30"
  image, gt_boxes, gt_labels = np.zeros((30, 40, 3), np.uint8), np.zeros((0, 4)), np.zeros(0)
  empty = [np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)]
  plain = np.asarray(report.draw_detections(image, gt_boxes, gt_labels, *empty, ("thing",)))
  noted = np.asarray(
      report.draw_detections(image, gt_boxes, gt_labels, *empty, ("thing",), note=note)
  )
  assert not plain.any() and noted[-40:, :200].any() and not noted[:200].any()
