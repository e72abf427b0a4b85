"""Image decoding that always ends in 3-channel RGB uint8, whatever the source stored.

Sources hand over either encoded bytes (TFDS with SkipDecoding, image folders) or an already
decoded uint8 [H, W, 3] tensor (digits, caches). JPEG bytes get the fused
`tf.image.decode_and_crop_jpeg`, which decodes only the crop window (most of the cost of an
Inception crop of a large photo); PNG, GIF and BMP go through `tf.io.decode_image`.
Grayscale and CMYK JPEGs come out as RGB too: libjpeg converts them when asked for 3 channels.
"""

from collections.abc import Callable

import tensorflow as tf

# box = [offset_y, offset_x, height, width], the crop_window layout of decode_and_crop_jpeg.
BoxSampler = Callable[[tf.Tensor], tf.Tensor]


def is_encoded(image: tf.Tensor) -> bool:
  """Encoded bytes (a scalar string) rather than pixels; decided when the graph is traced."""
  return image.dtype == tf.string


def decode_rgb(image: tf.Tensor) -> tf.Tensor:
  """The full image as uint8 [H, W, 3]; pixels pass through unchanged."""
  if not is_encoded(image):
    return _as_uint8_rgb(image)
  # expand_animations=False keeps the first frame of a GIF, so every format gives [H, W, 3].
  decoded = tf.io.decode_image(image, channels=3, expand_animations=False)
  decoded.set_shape([None, None, 3])
  return decoded


def decode_and_crop(image: tf.Tensor, sample_box: BoxSampler) -> tf.Tensor:
  """Crops the box that `sample_box(image_shape_hw)` picks; JPEGs decode only that box.

  The box depends only on the image's height and width, which for a JPEG is read from its
  header without decoding, so sampling first and decoding second costs nothing extra.
  """
  if not is_encoded(image):
    pixels = _as_uint8_rgb(image)
    return _crop(pixels, sample_box(tf.shape(pixels)[:2]))

  def fused_jpeg_path():
    box = sample_box(tf.io.extract_jpeg_shape(image)[:2])
    return tf.image.decode_and_crop_jpeg(image, box, channels=3)

  def generic_path():
    pixels = decode_rgb(image)
    return _crop(pixels, sample_box(tf.shape(pixels)[:2]))

  cropped = tf.cond(tf.io.is_jpeg(image), fused_jpeg_path, generic_path)
  cropped.set_shape([None, None, 3])
  return cropped


def _crop(pixels: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
  return tf.image.crop_to_bounding_box(pixels, box[0], box[1], box[2], box[3])


def _as_uint8_rgb(pixels: tf.Tensor) -> tf.Tensor:
  if pixels.dtype != tf.uint8:
    raise TypeError(f"decoded images must be uint8, got {pixels.dtype}")
  if pixels.shape.rank == 2:
    pixels = pixels[..., tf.newaxis]
  if pixels.shape[-1] == 1:
    pixels = tf.image.grayscale_to_rgb(pixels)
  return pixels
