"""R-CNN region warping, batched: all regions of an image in one `tf.image.crop_and_resize`.

R-CNN (Girshick et al. 2014, appendix A, `rcnn_im_crop.m`, crop mode 'warp', padding 16):
dilate each box about its centre so that, once warped to the network input, it has
`context_padding` pixels of image context on every side (scale = crop / (crop - 2 * padding));
clip to the image; warp anisotropically (no aspect ratio kept) to crop x crop; the part of the
dilated box outside the image is filled with the mean. Sampling the *unclipped* dilated box and
giving out-of-image samples the fill value is the same warp as R-CNN's clip-resize-and-pad,
without its integer rounding of the dilated box (kept continuous here).

Fill: the mean pixel of the model's input normalisation (`fill_pixel`), i.e. the value that
normalises to 0, rounded to uint8 because regions leave here as uint8 pixels (the training
pipeline normalises them like any image). After normalisation the fill is 0 to within half a
grey level (0.002 for 'unit', exactly 0 for 'caffe').

Sampling is bilinear at the centres of the output pixels (half-pixel convention, like
`tf.image.resize`), without antialiasing (R-CNN's `imresize(..., 'antialiasing', false)`): a box
warped to its own size reproduces its pixels exactly.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from input_pipeline import photometric

# The "mean" fill for each normalisation (input_pipeline/photometric.py), as RGB 0..255.
_MEAN_RGB = {
    "imagenet": tuple(255.0 * m for m in photometric.IMAGENET_MEAN_RGB),
    "caffe": tuple(reversed(photometric.CAFFE_MEAN_BGR)),
    "unit": (127.5, 127.5, 127.5),
}


def fill_pixel(normalization: str) -> tuple[int, int, int]:
  """RGB uint8 value that normalises to (nearly) 0 under `normalization`."""
  if normalization not in _MEAN_RGB:
    raise ValueError(f"normalization {normalization!r}: expected one of {sorted(_MEAN_RGB)}")
  return tuple(int(np.floor(v + 0.5)) for v in _MEAN_RGB[normalization])


def context_scale(crop_size: int, context_padding: int) -> float:
  """R-CNN's dilation factor: crop / (crop - 2 * padding)."""
  if not 0 <= 2 * context_padding < crop_size:
    raise ValueError(
        f"context_padding={context_padding} leaves no room for the box in a "
        f"{crop_size}x{crop_size} region (needs 2 * padding < crop size)"
    )
  return crop_size / (crop_size - 2 * context_padding)


def dilate_boxes(boxes: tf.Tensor, crop_size: int, context_padding: int) -> tf.Tensor:
  """[N, 4] x1, y1, x2, y2 dilated about their centres by `context_scale`."""
  boxes = tf.cast(boxes, tf.float32)
  scale = context_scale(crop_size, context_padding)
  centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0
  half = (boxes[:, 2:] - boxes[:, :2]) / 2.0 * scale
  return tf.concat([centre - half, centre + half], axis=1)


def warp_regions(
    image: tf.Tensor,
    boxes: tf.Tensor,
    crop_size: int,
    context_padding: int,
    fill: tuple[int, int, int],
) -> tf.Tensor:
  """uint8 image [H, W, 3] and boxes [N, 4] (continuous x1, y1, x2, y2) -> uint8 [N, S, S, 3]."""
  image = tf.convert_to_tensor(image)
  dilated = dilate_boxes(boxes, crop_size, context_padding)
  size = tf.cast(crop_size, tf.float32)
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  x1, y1, x2, y2 = tf.unstack(dilated, axis=1)
  # Output pixel i samples continuous coordinate y1 + (i + 0.5) * h / S, i.e. pixel-centre
  # coordinate (that minus 0.5); crop_and_resize puts its first and last samples at the box's
  # normalised ends times (H - 1), so the ends are the first and last sample positions.
  step_y, step_x = (y2 - y1) / size, (x2 - x1) / size
  normalised = tf.stack(
      [
          (y1 + 0.5 * step_y - 0.5) / tf.maximum(height - 1.0, 1.0),
          (x1 + 0.5 * step_x - 0.5) / tf.maximum(width - 1.0, 1.0),
          (y2 - 0.5 * step_y - 0.5) / tf.maximum(height - 1.0, 1.0),
          (x2 - 0.5 * step_x - 0.5) / tf.maximum(width - 1.0, 1.0),
      ],
      axis=1,
  )
  fill_value = tf.constant(fill, tf.float32)
  # crop_and_resize's extrapolation value is one scalar: shift so that the fill becomes 0.
  shifted = tf.cast(image, tf.float32)[tf.newaxis] - fill_value
  regions = tf.image.crop_and_resize(
      shifted,
      normalised,
      tf.zeros(tf.shape(normalised)[0], tf.int32),
      [crop_size, crop_size],
      method="bilinear",
      extrapolation_value=0.0,
  )
  regions = tf.clip_by_value(tf.round(regions + fill_value), 0.0, 255.0)
  return tf.cast(regions, tf.uint8)
