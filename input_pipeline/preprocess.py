"""Training-time geometry: Inception crop, random-interpolation resize, horizontal flip.

GoogLeNet paper, section 6: "sampling of various sized patches of the image whose size is
distributed evenly between 8% and 100% of the image area with aspect ratio constrained to the
interval [3/4, 4/3]", photometric distortions after Howard, and random interpolation methods.

Every function is pure and takes an explicit stateless seed (int64 [2]), so it gives the same
result eagerly and inside tf.data, and a resumed run replays the same augmentation.
"""

from collections.abc import Sequence
import math

import ml_collections
import tensorflow as tf

from input_pipeline import decode, photometric

# Paper section 6 lists these four; tf.image.resize names them like this.
INTERPOLATION_METHODS = ("bilinear", "area", "nearest", "bicubic")


def inception_crop_box(
    image_hw: tf.Tensor,
    seed: tf.Tensor,
    area_range: Sequence[float] = (0.08, 1.0),
    aspect_range: Sequence[float] = (3 / 4, 4 / 3),
    max_attempts: int = 10,
) -> tf.Tensor:
  """Samples [offset_y, offset_x, height, width] (int32) of an Inception crop.

  Area is uniform over `area_range` (as the paper says; tf.image.sample_distorted_bounding_box
  draws the height uniformly instead, which favours small crops). The aspect ratio is
  log-uniform so portrait and landscape are equally likely (torchvision's RandomResizedCrop).
  All `max_attempts` candidates are drawn at once and the first that fits is kept; if none
  fits, the largest centre crop whose aspect ratio is clamped into range is used.
  """
  height = tf.cast(image_hw[0], tf.float32)
  width = tf.cast(image_hw[1], tf.float32)
  area_seed, ratio_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))

  area = (
      height
      * width
      * tf.random.stateless_uniform(
          [max_attempts], area_seed, minval=area_range[0], maxval=area_range[1]
      )
  )
  log_ratio = tf.random.stateless_uniform(
      [max_attempts], ratio_seed, minval=math.log(aspect_range[0]), maxval=math.log(aspect_range[1])
  )
  crop_w = tf.round(tf.sqrt(area * tf.exp(log_ratio)))
  crop_h = tf.round(tf.sqrt(area / tf.exp(log_ratio)))
  fits = (crop_w >= 1) & (crop_w <= width) & (crop_h >= 1) & (crop_h <= height)
  first_fit = tf.argmax(tf.cast(fits, tf.int32))  # argmax returns the first maximum

  fallback_h, fallback_w = _centre_crop_size(height, width, aspect_range)
  crop_h = tf.where(fits[first_fit], crop_h[first_fit], fallback_h)
  crop_w = tf.where(fits[first_fit], crop_w[first_fit], fallback_w)

  # Sampled crops sit anywhere in the image; the fallback stays centred.
  free_space = tf.stack([height - crop_h, width - crop_w])
  uniform = tf.random.stateless_uniform([2], offset_seed)
  random_offset = tf.minimum(tf.floor(uniform * (free_space + 1)), free_space)
  offset = tf.where(fits[first_fit], random_offset, tf.floor(free_space / 2))
  return tf.cast(tf.stack([offset[0], offset[1], crop_h, crop_w]), tf.int32)


def _centre_crop_size(height, width, aspect_range):
  """Whole image, narrowed along one side when its aspect ratio is outside the range."""
  ratio = width / height
  too_tall = ratio < aspect_range[0]
  too_wide = ratio > aspect_range[1]
  crop_h = tf.where(too_tall, tf.round(width / aspect_range[0]), height)
  crop_w = tf.where(too_wide, tf.round(height * aspect_range[1]), width)
  return tf.minimum(tf.maximum(crop_h, 1.0), height), tf.minimum(tf.maximum(crop_w, 1.0), width)


def resize_with_random_method(
    image: tf.Tensor, size: int, seed: tf.Tensor, random_method: bool = True
) -> tf.Tensor:
  """Resizes to [size, size] as float32 in [0, 255]; the method is drawn uniformly.

  The method index is a stateless draw, so it is fixed by the seed like every other choice.
  """

  def resize_with(method):
    resized = tf.image.resize(image, [size, size], method=method)
    # Nearest keeps uint8; bicubic overshoots below 0 and above 255.
    return tf.clip_by_value(tf.cast(resized, tf.float32), 0.0, 255.0)

  if not random_method:
    return resize_with("bilinear")
  method_index = tf.random.stateless_uniform(
      [], seed, minval=0, maxval=len(INTERPOLATION_METHODS), dtype=tf.int32
  )
  resized = tf.switch_case(
      method_index, [lambda m=m: resize_with(m) for m in INTERPOLATION_METHODS]
  )
  resized.set_shape([size, size, 3])
  return resized


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Mirrors left-right with probability 1/2."""
  return tf.image.stateless_random_flip_left_right(image, seed)


def preprocess_for_train(
    image: tf.Tensor, seed: tf.Tensor, config: ml_collections.ConfigDict
) -> tf.Tensor:
  """Encoded bytes or uint8 pixels -> normalised float32 [S, S, 3] training input."""
  crop_seed, resize_seed, flip_seed, colour_seed, lighting_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 5)
  )

  def sample_box(image_hw):
    return inception_crop_box(
        image_hw,
        crop_seed,
        tuple(config.crop_area_range),
        tuple(config.crop_aspect_range),
        config.crop_max_attempts,
    )

  cropped = decode.decode_and_crop(image, sample_box)
  resized = resize_with_random_method(
      cropped, config.image_size, resize_seed, config.random_interpolation
  )
  if config.flip:
    resized = random_flip(resized, flip_seed)
  unit = resized / 255.0
  unit = photometric.colour_distortions(
      unit,
      colour_seed,
      brightness=config.brightness,
      contrast=config.contrast,
      saturation=config.saturation,
      hue=config.hue,
  )
  unit = photometric.pca_lighting_noise(unit, lighting_seed, config.pca_lighting)
  return photometric.normalize(unit, config.normalization)
