"""Crop geometry of the paper's evaluation schemes (section 7, Table 3; docs/paper_notes.md, "Evaluation crops").

Pure functions, no TensorFlow: a `View` names one crop symbolically (the shorter side the image
is resized to, the region of the resized image, the crop inside that region, the mirror flag)
and `view_box` turns it into pixel coordinates of the resized image. `view_box` only adds,
subtracts and floor-divides, so the same code gives Python ints here (tests, reports) and
tensors inside tf.data (`eval/multi_crop.py`, which cuts the views out).

The schemes, for an input size S (224 in the paper; every length scales by S / 224 so that the
32x32 digits model is evaluated the same way):

  144 crops: shorter side resized to round(S * s / 224) for s in 256, 288, 320, 352; the first,
    middle and last square of that side (left/centre/right for landscape images, top/centre/
    bottom for portrait ones); in each square the 4 corner S x S crops, the centre S x S crop
    and the whole square resized to S x S; each also mirrored. 4 x 3 x 6 x 2 = 144. For a square
    image the three squares coincide; they are kept (still 144 views, each square view three
    times), so every image costs and weighs the same as in the paper.
  10 crops: Krizhevsky et al. 2012 (sections 2 and 4.1): the shorter side resized to
    round(S * 256 / 224), the central square of that side, its 4 corner crops and centre crop,
    and their mirrors. These are exactly ten of the 144 views.
  1 crop: the training issue's centre crop (`input_pipeline.eval_preprocess.center_crop_view`):
    shorter side to round(S * eval_resize_ratio), the central S x S window of the *whole* resized
    image. It equals the centre crop of the central square when that square's margin
    (shorter side - S) is even, as for 224 (256 - 224 = 32); otherwise (e.g. S = 32: 37 - 32 = 5)
    the two windows can differ by a pixel on non-square images, and the single crop is a view
    of its own (`union_of_schemes` then computes 145 views).
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import Any, NamedTuple

import numpy as np

PAPER_INPUT_SIZE = 224
PAPER_SHORTER_SIDES = (256, 288, 320, 352)
KRIZHEVSKY_SHORTER_SIDE = 256

# Regions of the resized image a crop is taken from: three squares of side `shorter_side` along
# the longer side (first = left or top, last = right or bottom), or the whole resized image.
SQUARES = ("first", "middle", "last")
WHOLE_IMAGE = "whole"
# Crops inside a region: image_size windows, or the whole region resized to image_size.
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
CENTER = "center"
FULL = "full"
SQUARE_CROPS = CORNERS + (CENTER, FULL)

SCHEMES = (1, 10, 144)


@dataclasses.dataclass(frozen=True, order=True)
class View:
  """One evaluation crop, independent of the image's shape."""

  shorter_side: int  # the image is resized so that min(height, width) == shorter_side
  region: str  # one of SQUARES or WHOLE_IMAGE
  crop: str  # one of SQUARE_CROPS
  mirror: bool  # flipped left-right after cropping


class Box(NamedTuple):
  """A view's window in the resized image: rows y0:y1, columns x0:x1 (end exclusive)."""

  y0: Any
  x0: Any
  y1: Any
  x1: Any
  shorter_side: int
  scale: float  # resized / original length
  mirror: bool


def scaled_length(image_size: int, paper_length: int) -> int:
  """A length of the paper's 224-pixel protocol scaled to `image_size`: round(S * l / 224)."""
  return int(round(image_size * paper_length / PAPER_INPUT_SIZE))


def shorter_sides_144(image_size: int) -> tuple[int, ...]:
  """(256, 288, 320, 352) for 224; (37, 41, 46, 50) for 32."""
  return tuple(scaled_length(image_size, side) for side in PAPER_SHORTER_SIDES)


def multi_crop_144(image_size: int) -> list[View]:
  """The paper's 144 views: 4 scales x 3 squares x 6 crops x 2 mirrors, in that nesting."""
  return [
      View(side, square, crop, mirror)
      for side in shorter_sides_144(image_size)
      for square in SQUARES
      for crop in SQUARE_CROPS
      for mirror in (False, True)
  ]


def ten_crop(image_size: int) -> list[View]:
  """Krizhevsky's 10 views: corners and centre of the central square at 256 (scaled), mirrored."""
  side = scaled_length(image_size, KRIZHEVSKY_SHORTER_SIDE)
  return [
      View(side, "middle", crop, mirror) for crop in CORNERS + (CENTER,) for mirror in (False, True)
  ]


def single_crop(image_size: int, resize_size: int) -> list[View]:
  """The centre crop of the single-crop column (same window as eval_preprocess.center_crop)."""
  return [View(resize_size, WHOLE_IMAGE, CENTER, False)]


def scheme_views(num_crops: int, image_size: int, resize_size: int) -> list[View]:
  if num_crops == 1:
    return single_crop(image_size, resize_size)
  if num_crops == 10:
    return ten_crop(image_size)
  if num_crops == 144:
    return multi_crop_144(image_size)
  raise ValueError(f"unknown crop scheme {num_crops}: choose from {SCHEMES}")


def canonical(view: View, image_size: int) -> View:
  """The view with the same window on every image, in the 144-crop vocabulary when possible.

  The centre crop of the whole image starts at (H - S) // 2; the centre crop of the middle
  square at (H - n) // 2 + (n - S) // 2, which is the same number for every H exactly when
  n - S is even.
  """
  if (
      view.region == WHOLE_IMAGE
      and view.crop == CENTER
      and (view.shorter_side - image_size) % 2 == 0
  ):
    return dataclasses.replace(view, region="middle")
  return view


def union_of_schemes(
    schemes: Sequence[int], image_size: int, resize_size: int
) -> tuple[list[View], dict[int, list[int]]]:
  """(distinct views to compute, {scheme: indices of its views in that list}).

  One forward pass over the union answers every scheme: 1 and 10 crops are read off the 144.
  Views are listed in first-seen order over the schemes sorted largest first.
  """
  views: list[View] = []
  position: dict[View, int] = {}
  subsets: dict[int, list[int]] = {}
  for num_crops in sorted(set(schemes), reverse=True):
    indices = []
    for view in scheme_views(num_crops, image_size, resize_size):
      view = canonical(view, image_size)
      if view not in position:
        position[view] = len(views)
        views.append(view)
      indices.append(position[view])
    subsets[num_crops] = indices
  return views, subsets


def axis_offsets(length, shorter_side: int, image_size: int) -> tuple:
  """The image-dependent start offsets along one axis of a resized image of that `length`:
  (0, middle square, last square, centred window, last window)."""
  return (
      0,
      (length - shorter_side) // 2,
      length - shorter_side,
      (length - image_size) // 2,
      length - image_size,
  )


class BoxRecipe(NamedTuple):
  """A view's box as `axis_offsets(...)[term] + constant` per axis, and a fixed size."""

  term_y: int
  constant_y: int
  term_x: int
  constant_x: int
  height: int
  width: int


_SQUARE_TERM = {"first": 0, "middle": 1, "last": 2}


def box_recipe(view: View, image_size: int) -> BoxRecipe:
  """How to find the view's box in any resized image; `view_box` evaluates it.

  In a square region (side n) every crop sits at a constant offset from the square's corner;
  in the whole image only S x S windows exist, at 0, the centre or the far end of each axis.
  One of (height - n, width - n) is 0, so the squares run along the longer side only, and on
  a square image the three coincide.
  """
  size, side = image_size, view.shorter_side
  if view.region in _SQUARE_TERM:
    term = _SQUARE_TERM[view.region]
    if view.crop == FULL:
      return BoxRecipe(term, 0, term, 0, side, side)
    if view.crop == CENTER:
      offset_y = offset_x = (side - size) // 2
    elif view.crop in CORNERS:
      offset_y = 0 if view.crop.startswith("top") else side - size
      offset_x = 0 if view.crop.endswith("left") else side - size
    else:
      raise ValueError(f"unknown crop {view.crop!r}")
    return BoxRecipe(term, offset_y, term, offset_x, size, size)
  if view.region != WHOLE_IMAGE:
    raise ValueError(f"unknown region {view.region!r}")
  if view.crop == CENTER:
    return BoxRecipe(3, 0, 3, 0, size, size)
  if view.crop in CORNERS:
    return BoxRecipe(
        0 if view.crop.startswith("top") else 4,
        0,
        0 if view.crop.endswith("left") else 4,
        0,
        size,
        size,
    )
  raise ValueError(f"crop {view.crop!r} is not defined on the whole image")


def view_box(view: View, height, width, image_size: int):
  """(y0, x0, y1, x1) of the view in the image resized to `height` x `width`.

  `height` and `width` may be ints or scalar tensors; only +, - and // are used.
  """
  recipe = box_recipe(view, image_size)
  y0 = axis_offsets(height, view.shorter_side, image_size)[recipe.term_y] + recipe.constant_y
  x0 = axis_offsets(width, view.shorter_side, image_size)[recipe.term_x] + recipe.constant_x
  return y0, x0, y0 + recipe.height, x0 + recipe.width


def resized_shape(height: int, width: int, shorter_side: int) -> tuple[int, int]:
  """The shape `eval_preprocess.resize_shorter_side` produces, computed as it does (float32,
  round half to even, never below shorter_side)."""
  scale = np.float32(shorter_side) / np.float32(min(height, width))
  new = np.round(np.array([height, width], np.float32) * scale).astype(np.int64)
  return int(max(new[0], shorter_side)), int(max(new[1], shorter_side))


def image_boxes(views: Sequence[View], height: int, width: int, image_size: int) -> list[Box]:
  """Every view's box for an image of the given original shape."""
  boxes = []
  for view in views:
    resized_h, resized_w = resized_shape(height, width, view.shorter_side)
    y0, x0, y1, x1 = view_box(view, resized_h, resized_w, image_size)
    boxes.append(
        Box(
            int(y0),
            int(x0),
            int(y1),
            int(x1),
            view.shorter_side,
            view.shorter_side / min(height, width),
            view.mirror,
        )
    )
  return boxes
