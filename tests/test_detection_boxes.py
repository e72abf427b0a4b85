"""Box geometry against hand-computed cases: IoU (continuous and VOC +1), NMS, region warping."""

import numpy as np
import pytest

from detection import boxes as box_ops
from detection import warp


def test_iou_continuous_hand_cases():
  a = [[0, 0, 10, 10]]
  b = [[5, 0, 15, 10], [0, 0, 10, 5], [10, 0, 20, 10], [20, 20, 30, 30], [3, 3, 3, 8]]
  np.testing.assert_allclose(box_ops.iou_matrix(a, b)[0], [50 / 150, 0.5, 0.0, 0.0, 0.0])
  assert box_ops.iou_matrix(a, np.zeros((0, 4))).shape == (1, 0)


def test_iou_pixel_inclusive_adds_one_to_widths():
  # VOC boxes [1, 1, 10, 10] (10x10 pixels) and [1, 1, 10, 5] (10x5): IoU exactly 0.5;
  # without the +1 the same numbers give 9*4 / (9*9) = 0.444.
  a, b = [[1, 1, 10, 10]], [[1, 1, 10, 5]]
  assert box_ops.iou_matrix(a, b, pixel_inclusive=True)[0, 0] == 0.5
  assert box_ops.iou_matrix(a, b)[0, 0] == pytest.approx(36 / 81)
  # Touching VOC boxes share a column of pixels: [1..10] and [10..19] overlap in column 10.
  assert box_ops.iou_matrix([[1, 1, 10, 10]], [[10, 1, 19, 10]], pixel_inclusive=True)[
      0, 0
  ] == pytest.approx(10 / 190)


def test_voc_conversion_keeps_iou():
  voc = np.array([[1, 1, 10, 10], [5, 3, 20, 9]], float)
  continuous = box_ops.voc_to_continuous(voc)
  np.testing.assert_array_equal(continuous, [[0, 0, 10, 10], [4, 2, 20, 9]])
  np.testing.assert_array_equal(box_ops.continuous_to_voc(continuous), voc)
  np.testing.assert_allclose(
      box_ops.iou_matrix(voc, voc, pixel_inclusive=True), box_ops.iou_matrix(continuous, continuous)
  )


def test_nms_hand_case():
  boxes = [
      [0, 0, 10, 10],  # 0: best
      [1, 0, 11, 10],  # 1: IoU 90/110 with 0 -> suppressed
      [7, 0, 17, 10],  # 2: IoU 30/170 with 0 -> kept
      [0, 0, 10, 3],  # 3: IoU exactly 0.3 with 0 -> kept (suppression needs > 0.3)
      [7, 0, 17, 10],
  ]  # 4: duplicate of 2 with a lower score -> suppressed
  scores = [0.9, 0.8, 0.7, 0.6, 0.5]
  np.testing.assert_array_equal(box_ops.nms(boxes, scores, 0.3), [0, 2, 3])
  np.testing.assert_array_equal(box_ops.nms(boxes, scores, 0.95), [0, 1, 2, 3])
  # Equal scores keep their input order.
  np.testing.assert_array_equal(box_ops.nms([[0, 0, 1, 1], [5, 5, 6, 6]], [0.5, 0.5], 0.3), [0, 1])
  assert box_ops.nms(np.zeros((0, 4)), [], 0.3).size == 0


def warp_numpy(image, boxes, crop_size, padding, fill=(1, 2, 3)):
  return warp.warp_regions(image, np.asarray(boxes, np.float32), crop_size, padding, fill).numpy()


def random_image(height=64, width=64):
  return np.random.default_rng(0).integers(0, 256, (height, width, 3)).astype(np.uint8)


def test_warp_whole_image_at_own_size_is_identity():
  square = random_image()
  np.testing.assert_array_equal(warp_numpy(square, [[0, 0, 64, 64]], 64, 0)[0], square)
  # A 32 x 32 box anywhere inside, warped to 32: its pixels, unchanged.
  np.testing.assert_array_equal(warp_numpy(square, [[5, 9, 37, 41]], 32, 0)[0], square[9:41, 5:37])


def test_context_padding_gives_padding_pixels_of_context():
  # R-CNN: scale = crop / (crop - 2 * padding). crop 48, padding 8: scale 1.5, so the 32 px box
  # [16, 48) dilates to [8, 56): 48 px sampled 1:1, the box itself at output pixels 8..39.
  assert warp.context_scale(48, 8) == 1.5
  assert warp.context_scale(227, 16) == pytest.approx(227 / 195)
  image = random_image()
  region = warp_numpy(image, [[16, 16, 48, 48]], 48, 8)[0]
  np.testing.assert_array_equal(region, image[8:56, 8:56])
  np.testing.assert_array_equal(region[8:40, 8:40], image[16:48, 16:48])
  with pytest.raises(ValueError, match="context_padding"):
    warp.context_scale(32, 16)


def test_out_of_image_part_is_filled_with_the_mean():
  image = random_image()
  region = warp_numpy(image, [[0, 0, 32, 32]], 48, 8, fill=(7, 8, 9))[0]  # dilated to [-8, 40)
  np.testing.assert_array_equal(region[8:, 8:], image[:40, :40])
  assert (region[:8] == [7, 8, 9]).all() and (region[:, :8] == [7, 8, 9]).all()
  # The fill is the normalisation's mean pixel, i.e. ~0 after normalisation.
  assert warp.fill_pixel("unit") == (128, 128, 128)
  assert warp.fill_pixel("caffe") == (123, 117, 104)
  assert warp.fill_pixel("imagenet") == (124, 116, 104)


def test_anisotropic_warp_samples_pixel_centres():
  # Column value 2 * x; a 20 x 10 box at x = 10 warped to 10 x 10: output column j samples
  # x = 10 + 2j + 0.5 (between two pixels), i.e. value 21 + 4j, on every row.
  gradient = np.tile((np.arange(64) * 2).astype(np.uint8)[None, :, None], (64, 1, 3))
  region = warp_numpy(gradient, [[10, 0, 30, 10]], 10, 0)[0]
  np.testing.assert_array_equal(region[:, :, 0], np.tile(21 + 4 * np.arange(10), (10, 1)))


def test_many_boxes_in_one_call():
  image = random_image()
  boxes = [[0, 0, 64, 64], [16, 16, 48, 48], [0, 0, 32, 32]]
  batch = warp_numpy(image, boxes, 32, 0)
  assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.uint8
  np.testing.assert_array_equal(batch[1], image[16:48, 16:48])
  np.testing.assert_array_equal(batch[2], image[:32, :32])


def test_size_prior_ranks_proposals_by_their_share_of_the_image():
  from detection import scoring

  proposals = [np.array([[0, 0, 10, 10], [0, 0, 20, 10], [5, 5, 6, 6]], np.float32)]
  (scores,) = scoring.size_prior_scores(proposals, [(10, 20)], num_classes=2)
  np.testing.assert_allclose(scores[:, 1], [0.5, 1.0, 0.005])
  np.testing.assert_array_equal(scores[:, 1], scores[:, 2])  # every class alike
  np.testing.assert_allclose(scores[:, 0], 1.0 - scores[:, 1])  # background: the rest
