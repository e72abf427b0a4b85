"""On-device scoring: views -> per-model class scores per crop scheme -> ensemble top-k.

Paper section 7: softmax probabilities are averaged over the crops, then over the models
('mean_softmax'); the paper also tried max pooling over crops ('max_softmax', still averaged
over models), and averaging logits before one softmax ('mean_logits') is the other common rule.

Shapes: a batch holds B images with V views each, [B, V, S, S, 3], sharded over the mesh's
'data' axis along B. `crop_scores` scans over the views, a few at a time, so that each model
forward pass sees B x views_per_step rows (bounded memory, like single-crop evaluation), and
accumulates every crop scheme at once from a [num_schemes, V] weight matrix: one pass over the
views answers 1, 10 and 144 crops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

COMBINE_RULES = ("mean_softmax", "max_softmax", "mean_logits")


def check_combine(combine: str) -> None:
  if combine not in COMBINE_RULES:
    raise ValueError(f"combine={combine!r}: choose one of {COMBINE_RULES}")


def scheme_weights(
    subsets: Mapping[int, Sequence[int]], schemes: Sequence[int], num_views: int
) -> np.ndarray:
  """float32 [len(schemes), num_views]: how often each computed view counts in each scheme."""
  weights = np.zeros((len(schemes), num_views), np.float32)
  for row, scheme in enumerate(schemes):
    np.add.at(weights[row], np.asarray(subsets[scheme]), 1.0)
  return weights


def steps_and_chunk(num_views: int, views_per_step: int) -> tuple[int, int]:
  """(scan steps, views per step) with the fewest padding views for at most views_per_step."""
  views_per_step = max(1, min(views_per_step, num_views))
  steps = -(-num_views // views_per_step)
  return steps, -(-num_views // steps)


@functools.partial(jax.jit, static_argnames=("model", "combine", "views_per_step"))
def crop_scores(
    model: Any,
    variables: Any,
    images: jax.Array,
    weights: jax.Array,
    combine: str,
    views_per_step: int = 1,
) -> jax.Array:
  """One model's scores [num_schemes, B, num_classes], pooled over each scheme's views.

  images: [B, V, S, S, 3] (or [B, S, S, 3] for a single view); weights: [num_schemes, V].
  'mean_softmax' and 'max_softmax' give pooled probabilities, 'mean_logits' pooled logits.
  Each forward pass takes `views_per_step` views of the B images (B x views_per_step rows,
  image-major so every device keeps its own images). The model is a static argument: models
  with equal configs share one compilation.
  """
  if images.ndim == 4:
    images = images[:, None]
  batch, num_views = images.shape[:2]
  steps, chunk = steps_and_chunk(num_views, views_per_step)
  padding = steps * chunk - num_views
  if padding:  # padding views have weight 0 and are not members of any scheme
    images = jnp.pad(images, [(0, 0), (0, padding)] + [(0, 0)] * (images.ndim - 2))
    weights = jnp.pad(weights, [(0, 0), (0, padding)])
  member = weights > 0
  # [B, steps, chunk, ...] -> [steps, B, chunk, ...]: B stays the sharded dimension.
  images = jnp.moveaxis(images.reshape((batch, steps, chunk) + images.shape[2:]), 1, 0)
  step_weights = weights.reshape(weights.shape[0], steps, chunk).transpose(1, 0, 2)
  step_member = member.reshape(member.shape[0], steps, chunk).transpose(1, 0, 2)

  def add_views(total, inputs):
    views, view_weights, view_member = inputs  # [B, chunk, ...], [schemes, chunk] x 2
    logits = model.apply(
        variables, views.reshape((batch * chunk,) + views.shape[2:]), train=False
    ).logits.astype(jnp.float32)
    logits = logits.reshape(batch, chunk, -1)
    values = logits if combine == "mean_logits" else jax.nn.softmax(logits, axis=-1)
    if combine == "max_softmax":
      masked = jnp.where(view_member[:, None, :, None], values[None], -jnp.inf)
      return jnp.maximum(total, masked.max(axis=2)), None
    return total + jnp.einsum("sv,bvc->sbc", view_weights, values), None

  logits_shape = jax.eval_shape(
      lambda v: model.apply(variables, v, train=False).logits, images[0, :, 0]
  )
  shape = (weights.shape[0],) + logits_shape.shape
  initial = jnp.full(shape, -jnp.inf if combine == "max_softmax" else 0.0, jnp.float32)
  total, _ = jax.lax.scan(add_views, initial, (images, step_weights, step_member))
  if combine == "max_softmax":
    return total
  return total / jnp.sum(weights, axis=1)[:, None, None]


def final_scores(pooled: jax.Array, combine: str) -> jax.Array:
  """Reported class scores from pooled values: probabilities, except max-pooled softmax
  (averaged over models), which is a score that ranks but need not sum to 1."""
  return jax.nn.softmax(pooled, axis=-1) if combine == "mean_logits" else pooled


@functools.partial(jax.jit, static_argnames=("combine", "k"))
def rank_models(per_model: jax.Array, combine: str, k: int = 5) -> dict[str, jax.Array]:
  """Top-k classes of every single model and of every ensemble of the first m models.

  per_model: [M, num_schemes, B, C] from `crop_scores`. Returns
    'single_classes', 'single_scores':     [M, num_schemes, B, k], model m alone;
    'ensemble_classes', 'ensemble_scores': [M, num_schemes, B, k], the mean of models 0..m.
  """
  k = min(k, per_model.shape[-1])
  counts = jnp.arange(1, per_model.shape[0] + 1, dtype=jnp.float32)[:, None, None, None]
  prefix_means = jnp.cumsum(per_model, axis=0) / counts
  single_scores, single_classes = jax.lax.top_k(final_scores(per_model, combine), k)
  ensemble_scores, ensemble_classes = jax.lax.top_k(final_scores(prefix_means, combine), k)
  return {
      "single_classes": single_classes,
      "single_scores": single_scores,
      "ensemble_classes": ensemble_classes,
      "ensemble_scores": ensemble_scores,
  }
