"""Training and evaluation preprocessing: statistics, and eager == inside tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import config as config_lib
from input_pipeline import decode, eval_preprocess, photometric, preprocess

SEED = tf.constant([3, 14], tf.int64)


def in_tf_data(function, *args):
  """Runs function(*args) as a tf.data map (graph mode), returning numpy."""
  dataset = tf.data.Dataset.from_tensors(tuple(args)).map(function)
  return tf.nest.map_structure(lambda t: t.numpy(), next(iter(dataset)))


def photo(height=120, width=160, seed=0):
  """A smooth colourful image, so crops, flips and colour changes are all visible."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  channels = [np.sin(x / (7 + 3 * c) + y / (11 + c) + rng.uniform(0, 6)) for c in range(3)]
  return ((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8)


def sampled_boxes(image_hw, count, **kwargs):
  seeds = tf.data.Dataset.range(count).map(
      lambda i: tf.random.experimental.stateless_fold_in(SEED, i)
  )
  boxes = seeds.map(lambda seed: preprocess.inception_crop_box(image_hw, seed, **kwargs))
  return np.stack(list(boxes.as_numpy_iterator()))


def test_inception_crop_area_and_aspect_cover_their_ranges():
  height, width = 375, 500
  boxes = sampled_boxes(tf.constant([height, width]), 2000)
  offset_y, offset_x, crop_h, crop_w = boxes.T
  assert np.all(offset_y >= 0) and np.all(offset_y + crop_h <= height)
  assert np.all(offset_x >= 0) and np.all(offset_x + crop_w <= width)
  area = crop_h * crop_w / (height * width)
  aspect = crop_w / crop_h
  # Rounding to whole pixels moves the area and aspect ratio by well under 2%.
  assert area.min() >= 0.08 * 0.98 and area.max() <= 1.0
  assert aspect.min() >= 0.75 * 0.98 and aspect.max() <= 4 / 3 * 1.02
  assert area.min() < 0.15 and area.max() > 0.9
  assert aspect.min() < 0.8 and aspect.max() > 1.25
  # Area is uniform (the paper), not skewed to small crops as when the height is uniform
  # (tf.image.sample_distorted_bounding_box, which would put ~1.45x as many in the first bin).
  # Below half the area every candidate fits, so rejection does not bend the distribution there.
  small, medium = np.histogram(area, bins=[0.1, 0.3, 0.5])[0]
  assert 0.8 < small / medium < 1.25
  # Offsets spread over the free space instead of sticking to a corner.
  assert offset_x.max() > width / 3 and offset_y.max() > height / 3


def test_inception_crop_falls_back_to_centre_crop_with_clamped_aspect():
  # A 1000x50 strip cannot hold any box with aspect <= 4/3 and area >= 50%.
  boxes = sampled_boxes(tf.constant([50, 1000]), 20, area_range=(0.5, 1.0))
  expected_width = round(50 * 4 / 3)
  np.testing.assert_array_equal(boxes[:, 2], 50)
  np.testing.assert_array_equal(boxes[:, 3], expected_width)
  np.testing.assert_array_equal(boxes[:, 1], (1000 - expected_width) // 2)


def test_inception_crop_box_is_the_same_eagerly_and_in_tf_data():
  shape = tf.constant([240, 320])
  eager = preprocess.inception_crop_box(shape, SEED).numpy()
  np.testing.assert_array_equal(eager, in_tf_data(preprocess.inception_crop_box, shape, SEED))
  other_seed = preprocess.inception_crop_box(shape, SEED + 1).numpy()
  assert not np.array_equal(eager, other_seed)


@pytest.mark.parametrize("encoding", ["jpeg", "png", "pixels"])
def test_decode_and_crop_is_the_same_eagerly_and_in_tf_data(encoding):
  pixels = photo()
  image = {
      "jpeg": lambda: tf.io.encode_jpeg(pixels),
      "png": lambda: tf.io.encode_png(pixels),
      "pixels": lambda: tf.constant(pixels),
  }[encoding]()
  box = tf.constant([10, 20, 50, 70], tf.int32)

  def crop(image):
    return decode.decode_and_crop(image, lambda image_hw: box)

  eager = crop(image).numpy()
  assert eager.shape == (50, 70, 3) and eager.dtype == np.uint8
  np.testing.assert_array_equal(eager, in_tf_data(crop, image))
  if encoding != "jpeg":  # lossless: exactly the same window of the original
    np.testing.assert_array_equal(eager, pixels[10:60, 20:90])


def test_fused_jpeg_crop_matches_decode_then_crop():
  encoded = tf.io.encode_jpeg(photo(), quality=95)
  box = tf.constant([16, 24, 64, 80], tf.int32)
  fused = decode.decode_and_crop(encoded, lambda image_hw: box).numpy().astype(int)
  full = tf.io.decode_jpeg(encoded, channels=3).numpy()[16:80, 24:104].astype(int)
  # libjpeg's chroma upsampling lacks its right-hand neighbour in the last cropped column.
  assert np.abs(fused[:, :-1] - full[:, :-1]).max() <= 1
  assert np.abs(fused[:, -1] - full[:, -1]).mean() < 4


def test_random_interpolation_uses_all_four_methods_and_matches_tf_data():
  image = tf.constant(photo())
  results = {}
  for index in range(24):
    seed = SEED + index
    eager = preprocess.resize_with_random_method(image, 32, seed).numpy()
    np.testing.assert_allclose(
        eager,
        in_tf_data(lambda i, s: preprocess.resize_with_random_method(i, 32, s), image, seed),
        atol=1e-4,
    )
    assert eager.shape == (32, 32, 3) and eager.min() >= 0 and eager.max() <= 255
    results[eager.tobytes()] = True
  assert len(results) == 4  # bilinear, area, nearest, bicubic all give different pixels
  fixed = {
      preprocess.resize_with_random_method(image, 32, SEED + i, False).numpy().tobytes()
      for i in range(5)
  }
  assert len(fixed) == 1


def test_random_flip_mirrors_about_half_the_time_and_matches_tf_data():
  image = tf.constant(photo(), tf.float32)
  flipped = 0
  for index in range(40):
    eager = preprocess.random_flip(image, SEED + index).numpy()
    np.testing.assert_array_equal(eager, in_tf_data(preprocess.random_flip, image, SEED + index))
    if np.array_equal(eager, image.numpy()[:, ::-1]):
      flipped += 1
    else:
      np.testing.assert_array_equal(eager, image.numpy())
  assert 8 <= flipped <= 32


def test_colour_distortions_change_the_image_match_tf_data_and_switch_off():
  image = tf.constant(photo(), tf.float32) / 255.0
  strengths = dict(brightness=0.2, contrast=0.5, saturation=0.5, hue=0.2)
  eager = photometric.colour_distortions(image, SEED, **strengths).numpy()
  np.testing.assert_allclose(
      eager,
      in_tf_data(lambda i, s: photometric.colour_distortions(i, s, **strengths), image, SEED),
      atol=1e-5,
  )
  assert eager.min() >= 0 and eager.max() <= 1
  assert np.abs(eager - image.numpy()).mean() > 0.01
  for name in strengths:
    only_one = {key: (value if key == name else 0.0) for key, value in strengths.items()}
    changed = photometric.colour_distortions(image, SEED, **only_one).numpy()
    assert np.abs(changed - image.numpy()).max() > 1e-3, name
  unchanged = photometric.colour_distortions(image, SEED).numpy()
  np.testing.assert_array_equal(unchanged, image.numpy())


def test_pca_lighting_adds_one_rgb_offset_per_image():
  image = tf.fill([8, 8, 3], 0.5)
  eager = photometric.pca_lighting_noise(image, SEED, 0.1).numpy()
  np.testing.assert_allclose(
      eager,
      in_tf_data(lambda i, s: photometric.pca_lighting_noise(i, s, 0.1), image, SEED),
      atol=1e-6,
  )
  offset = eager - 0.5
  assert np.abs(offset).max() > 1e-4
  np.testing.assert_allclose(offset, np.broadcast_to(offset[0, 0], offset.shape), atol=1e-6)
  np.testing.assert_array_equal(
      photometric.pca_lighting_noise(image, SEED, 0.0).numpy(), image.numpy()
  )


def test_normalizations_match_their_conventions():
  rgb = tf.constant([[0.0, 0.5, 1.0]])
  np.testing.assert_allclose(
      photometric.normalize(rgb, "imagenet").numpy(),
      [[-0.485 / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225]],
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      photometric.normalize(rgb, "caffe").numpy(), [[255 - 104, 127.5 - 117, 0 - 123]], rtol=1e-5
  )
  np.testing.assert_allclose(photometric.normalize(rgb, "unit").numpy(), [[-1, 0, 1]])
  for method in ("imagenet", "caffe", "unit"):
    np.testing.assert_allclose(
        in_tf_data(lambda x, m=method: photometric.normalize(x, m), rgb),
        photometric.normalize(rgb, method).numpy(),
        rtol=1e-6,
    )
  with pytest.raises(ValueError, match="normalization"):
    photometric.normalize(rgb, "bgr")


def test_preprocess_for_train_is_reproducible_and_the_same_in_tf_data():
  config = config_lib.default_data_config()
  config.image_size = 48
  encoded = tf.io.encode_jpeg(photo(200, 300))
  eager = preprocess.preprocess_for_train(encoded, SEED, config).numpy()
  assert eager.shape == (48, 48, 3) and eager.dtype == np.float32
  np.testing.assert_allclose(
      eager,
      in_tf_data(lambda e, s: preprocess.preprocess_for_train(e, s, config), encoded, SEED),
      atol=1e-4,
  )
  np.testing.assert_array_equal(
      eager, preprocess.preprocess_for_train(encoded, SEED, config).numpy()
  )
  assert not np.allclose(eager, preprocess.preprocess_for_train(encoded, SEED + 1, config).numpy())


def test_eval_view_resizes_shorter_side_and_centre_crops():
  config = config_lib.default_data_config()
  config.image_size = 224
  assert eval_preprocess.eval_resize_size(224, config.eval_resize_ratio) == 256
  # A wide image with a marker column in the middle: it must stay in the centre of the crop.
  pixels = np.zeros((300, 600, 3), np.uint8)
  pixels[:, 295:305] = 255
  resized = eval_preprocess.resize_shorter_side(tf.constant(pixels), 256).numpy()
  assert resized.shape == (256, 512, 3)
  view = eval_preprocess.center_crop_view(tf.constant(pixels), 224, 256).numpy()
  assert view.shape == (1, 224, 224, 3)
  bright_columns = np.nonzero(view[0, 100, :, 0] > 128)[0]
  assert abs(bright_columns.mean() - 111.5) < 1.5
  eager = eval_preprocess.preprocess_for_eval(tf.constant(pixels), config).numpy()
  assert eager.shape == (224, 224, 3)
  np.testing.assert_allclose(
      eager,
      in_tf_data(lambda p: eval_preprocess.preprocess_for_eval(p, config), tf.constant(pixels)),
      atol=1e-4,
  )


def test_decode_rgb_turns_grey_and_png_into_three_channels():
  grey = photo()[..., :1]
  for encoded in (tf.io.encode_jpeg(grey), tf.io.encode_png(grey)):
    decoded = decode.decode_rgb(encoded).numpy()
    assert decoded.shape == (120, 160, 3)
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
  np.testing.assert_array_equal(decode.decode_rgb(tf.constant(grey)).numpy()[..., 1], grey[..., 0])
