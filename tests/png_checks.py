"""Checks that a PNG the binaries wrote is a real picture: valid, of its size, not blank."""

import numpy as np
from PIL import Image


def assert_picture(path, width, height, min_colours=8, min_std=20.0):
  """Decodes `path` as a PNG of width x height pixels with some content: a blank or one-colour
  picture (a figure whose drawing failed silently) has a pixel spread near 0 and few colours."""
  with Image.open(path) as image:
    assert image.format == "PNG", image.format
    assert image.size == (width, height), image.size
    pixels = np.asarray(image.convert("RGB"))
  colours = np.unique(pixels.reshape(-1, 3), axis=0)
  assert len(colours) >= min_colours, f"{path}: only {len(colours)} distinct colours"
  assert pixels.std() > min_std, f"{path}: pixel standard deviation {pixels.std():.1f}"
  return pixels
