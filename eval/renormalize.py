"""Feeding each model of an evaluation the input convention its weights were trained with.

The three conventions of `config.data.normalization` ('imagenet', 'caffe', 'unit') are each a
channel permutation plus a per-channel affine map of RGB in [0, 1]
(`input_pipeline.photometric.normalization_affine`), so images normalised one way convert
exactly into any other with one fused multiply-add on the device. Evaluation cuts the views
once, in the run's convention, and a model whose directory records another one (input.json,
runtime/artifacts.py) sees them converted: an ensemble of the Caffe import ('caffe') and the
torchvision import ('unit') is one pass over the data, as in the paper's Table 3. The views are
crops and resizes of the image, which commute with a per-channel affine map (interpolation
weights sum to 1), so the converted views equal views cut in the model's own convention.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline.photometric import normalization_affine


def conversion(source: str, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(order, scale, offset) with target[..., c] = source[..., order[c]] * scale[c] + offset[c]."""
  source_order, source_scale, source_offset = normalization_affine(source)
  target_order, target_scale, target_offset = normalization_affine(target)
  # source channel holding RGB channel k: the inverse permutation of source_order.
  channel_of_rgb = np.argsort(source_order)
  order = channel_of_rgb[target_order]
  # rgb01 = (source[order] - source_offset[order]) / source_scale[order]
  scale = target_scale / source_scale[order]
  offset = target_offset - source_offset[order] * scale
  return order, scale.astype(np.float32), offset.astype(np.float32)


def convert(images: jax.Array, source: str, target: str) -> jax.Array:
  """Images normalised with `source` as if normalised with `target` (last axis: channels)."""
  if source == target:
    return images
  order, scale, offset = conversion(source, target)
  return jnp.take(images, jnp.asarray(order), axis=-1) * scale + offset


@dataclasses.dataclass(frozen=True)
class Renormalized:
  """A model that takes images in `source`'s convention and feeds `target`'s to `model`.

  Frozen and hashable like the Flax module it wraps, so it can be a static jit argument.
  """

  model: Any
  source: str
  target: str

  def apply(self, variables: Any, images: jax.Array, **kwargs: Any) -> Any:
    return self.model.apply(variables, convert(images, self.source, self.target), **kwargs)


def for_run(model: Any, recorded: str | None, run: str, name: str) -> Any:
  """`model` taking the run's `run`-normalised images, converted to the convention its
  directory `name` records (`recorded`; None: the run's, and `model` is returned as is)."""
  if recorded in (None, run):
    return model
  logging.info(
      "%s expects '%s' input: its images are converted from the run's '%s' on the device.",
      name,
      recorded,
      run,
  )
  return Renormalized(model, run, recorded)
