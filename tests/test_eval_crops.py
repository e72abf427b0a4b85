"""Crop geometry of the 1/10/144-crop schemes (paper section 7) and their extraction in tf.data."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from eval import crops, multi_crop
from input_pipeline import eval_preprocess

# Hand-computed for a 480 x 640 (height x width) photo at the paper's 224: the shorter side
# n -> longer side round(640 * n / 480), and the first/middle/last square start along it.
LANDSCAPE_LONG_SIDES = {256: 341, 288: 384, 320: 427, 352: 469}
SQUARE_STARTS = {256: (0, 42, 85), 288: (0, 48, 96), 320: (0, 53, 107), 352: (0, 58, 117)}


def paper_144_boxes(square_corners):
  """The paper's description, written out: for each (n, square top, square left), the 4 corner
  224 crops, the centre 224 crop and the whole square, each plain and mirrored."""
  boxes = collections.Counter()
  for n, top, left in square_corners:
    far, mid = n - 224, (n - 224) // 2
    windows = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]
    for mirror in (False, True):
      for y, x in windows:
        boxes[(top + y, left + x, top + y + 224, left + x + 224, n, mirror)] += 1
      boxes[(top, left, top + n, left + n, n, mirror)] += 1
  return boxes


def as_counter(boxes):
  return collections.Counter((b.y0, b.x0, b.y1, b.x1, b.shorter_side, b.mirror) for b in boxes)


def test_144_crops_of_a_landscape_image_are_the_papers_boxes():
  views = crops.multi_crop_144(224)
  boxes = crops.image_boxes(views, 480, 640, 224)
  assert len(boxes) == 144
  expected = paper_144_boxes(
      [(n, 0, left) for n, starts in SQUARE_STARTS.items() for left in starts]
  )
  assert as_counter(boxes) == expected
  assert len(expected) == 144  # all distinct on a landscape image
  # Spot checks, by hand: the centre crop of the centre square at 256, the right square at 352.
  by_view = dict(zip(views, boxes))
  centre = by_view[crops.View(256, "middle", "center", False)]
  assert (centre.y0, centre.x0, centre.y1, centre.x1) == (16, 58, 240, 282)
  assert centre.scale == pytest.approx(256 / 480)
  right = by_view[crops.View(352, "last", "full", True)]
  assert (right.y0, right.x0, right.y1, right.x1, right.mirror) == (0, 117, 352, 469, True)
  # Every box lies inside its resized image.
  for view, box in by_view.items():
    assert 0 <= box.y0 < box.y1 <= view.shorter_side
    assert 0 <= box.x0 < box.x1 <= LANDSCAPE_LONG_SIDES[view.shorter_side]


def test_144_crops_of_a_portrait_image_run_top_centre_bottom():
  boxes = crops.image_boxes(crops.multi_crop_144(224), 640, 480, 224)
  expected = paper_144_boxes([(n, top, 0) for n, starts in SQUARE_STARTS.items() for top in starts])
  assert as_counter(boxes) == expected


def test_144_crops_of_a_square_image_keep_the_three_coinciding_squares():
  boxes = crops.image_boxes(crops.multi_crop_144(224), 300, 300, 224)
  assert len(boxes) == 144
  counts = as_counter(boxes)
  assert set(counts.values()) == {3} and len(counts) == 48
  assert counts == paper_144_boxes([(n, 0, 0) for n in SQUARE_STARTS for _ in range(3)])


def test_lengths_scale_with_the_input_size():
  assert crops.shorter_sides_144(224) == (256, 288, 320, 352)
  assert crops.shorter_sides_144(32) == (37, 41, 46, 50)
  views = [crops.View(37, "first", crop, False) for crop in crops.SQUARE_CROPS]
  boxes = [tuple(b[:4]) for b in crops.image_boxes(views, 32, 32, 32)]
  assert boxes == [
      (0, 0, 32, 32),
      (0, 5, 32, 37),
      (5, 0, 37, 32),
      (5, 5, 37, 37),
      (2, 2, 34, 34),
      (0, 0, 37, 37),
  ]


def test_ten_crops_are_krizhevskys_centre_square_corners_and_centre():
  views = crops.ten_crop(224)
  boxes = crops.image_boxes(views, 480, 640, 224)
  plain = [
      (0, 42, 224, 266),
      (0, 74, 224, 298),
      (32, 42, 256, 266),
      (32, 74, 256, 298),
      (16, 58, 240, 282),
  ]
  assert as_counter(boxes) == collections.Counter(
      [box + (256, mirror) for box in plain for mirror in (False, True)]
  )
  portrait = crops.image_boxes(views, 640, 480, 224)
  assert {tuple(b[:4]) for b in portrait} == {(y0, x0, y1, x1) for x0, y0, x1, y1 in plain}
  assert set(views) <= set(crops.multi_crop_144(224))


@pytest.mark.parametrize("height,width", [(480, 640), (641, 480), (300, 300), (37, 51)])
def test_resized_shape_matches_the_tensorflow_resize(height, width):
  image = tf.zeros([height, width, 3], tf.uint8)
  for side in (37, 256, 352):
    resized = eval_preprocess.resize_shorter_side(image, side)
    assert tuple(resized.shape[:2]) == crops.resized_shape(height, width, side)


def test_union_reads_one_and_ten_crops_off_the_144_views():
  views, subsets = crops.union_of_schemes((1, 10, 144), 224, 256)
  assert len(views) == 144 and views == crops.multi_crop_144(224)
  assert [views[i] for i in subsets[10]] == crops.ten_crop(224)
  assert views[subsets[1][0]] == crops.View(256, "middle", "center", False)
  assert sorted(subsets[144]) == list(range(144))
  # At 32 pixels the margin 37 - 32 is odd: the image centre and the centre square's centre
  # differ by a pixel on non-square images, so the single crop is a view of its own.
  views32, subsets32 = crops.union_of_schemes((1, 10, 144), 32, 37)
  assert len(views32) == 145
  assert views32[subsets32[1][0]] == crops.View(37, "whole", "center", False)
  single = crops.image_boxes([views32[subsets32[1][0]]], 40, 50, 32)[0]
  middle = crops.image_boxes([crops.View(37, "middle", "center", False)], 40, 50, 32)[0]
  assert (single.x0, middle.x0) == (7, 6)
  views_only_1, subsets_only_1 = crops.union_of_schemes((1,), 224, 256)
  assert len(views_only_1) == 1 and subsets_only_1 == {1: [0]}


@pytest.mark.parametrize("height,width", [(41, 59), (30, 30), (61, 45), (480, 640)])
def test_canonical_views_cut_the_same_window(height, width):
  for image_size, resize in ((224, 256), (32, 37), (32, 40)):
    view = crops.single_crop(image_size, resize)[0]
    assert (
        crops.image_boxes([view], height, width, image_size)[0]
        == crops.image_boxes([crops.canonical(view, image_size)], height, width, image_size)[0]
    )


def reference_views(image, views, image_size):
  """Numpy slicing of the boxes `crops.image_boxes` reports (the paper's recipe, step by step)."""
  height, width = image.shape[:2]
  resized = {
      side: eval_preprocess.resize_shorter_side(tf.constant(image), side).numpy()
      for side in {view.shorter_side for view in views}
  }
  out = []
  for view, box in zip(views, crops.image_boxes(views, height, width, image_size)):
    window = resized[view.shorter_side][box.y0 : box.y1, box.x0 : box.x1]
    if view.crop == "full":
      window = tf.clip_by_value(
          tf.image.resize(window, [image_size, image_size], antialias=True), 0, 255
      ).numpy()
    assert window.shape == (image_size, image_size, 3)
    out.append(window[:, ::-1] if box.mirror else window)
  return np.stack(out)


@pytest.mark.parametrize("height,width", [(45, 60), (52, 33)])
def test_extracted_views_are_the_boxes_eagerly_and_in_tf_data(height, width):
  image = np.random.default_rng(height).integers(0, 256, (height, width, 3), np.uint8)
  views, _ = crops.union_of_schemes((1, 10, 144), 32, 37)
  eager = multi_crop.extract_views(tf.constant(image), views, 32).numpy()
  assert eager.shape == (145, 32, 32, 3)
  np.testing.assert_allclose(eager, reference_views(image, views, 32), atol=1e-3)
  dataset = tf.data.Dataset.from_tensors(image).map(
      lambda x: multi_crop.view_function(views)(x, 32, 37)
  )
  np.testing.assert_allclose(next(iter(dataset)).numpy(), eager, atol=1e-4)
  # The single crop is the training pipeline's centre crop.
  _, subsets = crops.union_of_schemes((1,), 32, 37)
  np.testing.assert_array_equal(
      eager[views.index(crops.single_crop(32, 37)[0])],
      eval_preprocess.center_crop_view(tf.constant(image), 32, 37).numpy()[0],
  )
  assert subsets == {1: [0]}
