"""Cutting a set of `crops.View`s out of one decoded image, inside tf.data.

Per distinct shorter side: one antialiased resize (as the single-crop pipeline does), then all
S x S windows of that side in one gather, and the squares that are shown whole in one more
gather plus one batched resize (square -> S x S). Box positions come from `crops.box_recipe`
(the same geometry the tests check) as a gather into `crops.axis_offsets`, so the graph has a
few dozen ops whatever the number of views: building the tf.data pipeline stays fast, and
`Dataset.map(..., num_parallel_calls)` spreads the per-image work over the host's cores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from eval import crops
from input_pipeline import eval_preprocess


def _windows(
    image: tf.Tensor, starts_y: tf.Tensor, starts_x: tf.Tensor, size: int, mirror: np.ndarray
) -> tf.Tensor:
  """[k, size, size, C] windows at (starts_y[i], starts_x[i]); mirror[i] flips window i."""
  width = tf.shape(image)[1]
  steps = np.arange(size, dtype=np.int32)
  columns = np.where(mirror[:, None], steps[::-1][None], steps[None])  # [k, size]
  rows = starts_y[:, None] + steps[None]  # [k, size]
  columns = starts_x[:, None] + columns
  flat_index = rows[:, :, None] * width + columns[:, None, :]  # [k, size, size]
  return tf.gather(tf.reshape(image, [-1, image.shape[-1]]), flat_index)


def _starts(
    recipes: Sequence[crops.BoxRecipe],
    height: tf.Tensor,
    width: tf.Tensor,
    shorter_side: int,
    image_size: int,
) -> tuple[tf.Tensor, tf.Tensor]:
  offsets_y = tf.stack(crops.axis_offsets(height, shorter_side, image_size))
  offsets_x = tf.stack(crops.axis_offsets(width, shorter_side, image_size))
  starts_y = tf.gather(offsets_y, [r.term_y for r in recipes]) + np.array(
      [r.constant_y for r in recipes], np.int32
  )
  starts_x = tf.gather(offsets_x, [r.term_x for r in recipes]) + np.array(
      [r.constant_x for r in recipes], np.int32
  )
  return starts_y, starts_x


def extract_views(image: tf.Tensor, views: Sequence[crops.View], image_size: int) -> tf.Tensor:
  """uint8 [H, W, 3] -> float32 [len(views), S, S, 3] in [0, 255], in the order of `views`."""
  size = image_size
  parts, order = [], []
  for side in sorted({view.shorter_side for view in views}):
    resized = eval_preprocess.resize_shorter_side(image, side)
    height, width = tf.shape(resized)[0], tf.shape(resized)[1]
    group = [(index, view) for index, view in enumerate(views) if view.shorter_side == side]
    windowed = [(i, v) for i, v in group if v.crop != crops.FULL]
    whole_squares = [(i, v) for i, v in group if v.crop == crops.FULL]
    if windowed:
      recipes = [crops.box_recipe(v, size) for _, v in windowed]
      starts_y, starts_x = _starts(recipes, height, width, side, size)
      mirror = np.array([v.mirror for _, v in windowed])
      parts.append(_windows(resized, starts_y, starts_x, size, mirror))
      order += [i for i, _ in windowed]
    if whole_squares:
      # Each distinct square resized to S x S once, then mirrored where a view asks for it.
      distinct = sorted({crops.box_recipe(v, size) for _, v in whole_squares})
      starts_y, starts_x = _starts(distinct, height, width, side, size)
      squares = _windows(resized, starts_y, starts_x, side, np.zeros(len(distinct), bool))
      squares = tf.image.resize(squares, [size, size], method="bilinear", antialias=True)
      squares = tf.clip_by_value(squares, 0.0, 255.0)
      candidates = tf.concat([squares, squares[:, :, ::-1]], axis=0)
      parts.append(
          tf.gather(
              candidates,
              [
                  distinct.index(crops.box_recipe(v, size)) + len(distinct) * v.mirror
                  for _, v in whole_squares
              ],
          )
      )
      order += [i for i, _ in whole_squares]
  stacked = tf.concat(parts, axis=0)
  inverse = np.argsort(np.array(order))  # row of stacked holding view j
  views_tensor = tf.gather(stacked, inverse)
  views_tensor.set_shape([len(views), size, size, image.shape[-1]])
  return views_tensor


def view_function(views: Sequence[crops.View]) -> eval_preprocess.ViewFunction:
  """A view function for `input_pipeline.create_eval_dataset(..., view=...)`.

  The views carry their own shorter sides, so the pipeline's resize_size is not used.
  """
  views = tuple(views)

  def make_views(image, image_size, resize_size):
    del resize_size
    return extract_views(image, views, image_size)

  return make_views
