"""Evaluation views: deterministic crops of a fully decoded image.

The pipeline decodes the whole image once (`decode.decode_rgb`) and then applies a view
function `(uint8 [H, W, 3], image_size S, resize_size) -> float32 [num_views, S, S, 3]`. The single centre crop here is the
paper's "1 crop" column of Table 3; the 10- and 144-crop schemes (docs/paper_notes.md, "Evaluation crops") are
view functions of the same shape built by the classification evaluator
(`eval.multi_crop.view_function`) and passed to `create_eval_dataset(view=...)`.
"""

from collections.abc import Callable

import ml_collections
import tensorflow as tf

from input_pipeline import photometric

# (image, image_size, resize_size) -> views [num_views, image_size, image_size, 3]
ViewFunction = Callable[[tf.Tensor, int, int], tf.Tensor]


def eval_resize_size(image_size: int, resize_ratio: float) -> int:
  """Shorter side before the centre crop: 256 for 224 with the default ratio 256/224."""
  return int(round(image_size * resize_ratio))


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
  """Scales so min(height, width) == size, keeping the aspect ratio; float32 in [0, 255].

  Antialiasing matters here: photos are often 5-10x larger than the target, and plain bilinear
  downsampling would alias fine texture into the evaluated crop.
  """
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.cast(size, tf.float32) / tf.reduce_min(hw)
  # max(size, ...) guards the shorter side against rounding down to size - 1.
  new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), size)
  resized = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
  return tf.clip_by_value(resized, 0.0, 255.0)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """The central size x size window (image must be at least that large)."""
  hw = tf.shape(image)[:2]
  offset_y = (hw[0] - size) // 2
  offset_x = (hw[1] - size) // 2
  cropped = image[offset_y : offset_y + size, offset_x : offset_x + size]
  cropped.set_shape([size, size, image.shape[-1]])
  return cropped


def center_crop_view(image: tf.Tensor, image_size: int, resize_size: int) -> tf.Tensor:
  """One view: shorter side to resize_size, then the central image_size crop -> [1, S, S, 3]."""
  return center_crop(resize_shorter_side(image, resize_size), image_size)[tf.newaxis]


VIEW_FUNCTIONS: dict[str, ViewFunction] = {"center": center_crop_view}


def preprocess_for_eval(
    image: tf.Tensor, config: ml_collections.ConfigDict, view: str | ViewFunction = "center"
) -> tf.Tensor:
  """uint8 [H, W, 3] -> normalised float32 views [V, S, S, 3], or [S, S, 3] when V == 1.

  `view` is a name in VIEW_FUNCTIONS or a view function. A single view is squeezed so
  single-crop evaluation batches look like training batches.
  """
  resize_size = eval_resize_size(config.image_size, config.eval_resize_ratio)
  view_function = VIEW_FUNCTIONS[view] if isinstance(view, str) else view
  views = view_function(image, config.image_size, resize_size)
  views = photometric.normalize(views / 255.0, config.normalization)
  if views.shape[0] == 1:
    return views[0]
  return views
