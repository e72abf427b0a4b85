"""MultiBox (Erhan et al., CVPR 2014; Szegedy et al., arXiv:1412.1441): priors, matching, loss.

A MultiBox network predicts K boxes and K objectness confidences per image; box i is an offset
to a fixed prior box i. Everything here is in image-normalised coordinates, [x1, y1, x2, y2]
in [0, 1] (the package's pixel boxes divided by width and height), as in the papers.

Priors: k-means over the training set's ground-truth boxes in that 4-d box space (Erhan et al.,
section 3: "priors ... obtained by clustering the ground truth locations with k-means"),
initialised with k-means++ from a seeded generator, so the same boxes give the same priors.

Matching, done on the host when the training examples are written, since it depends on the
priors and the ground truth only (not on the predictions):
  * 'bipartite' (Erhan et al.): each ground-truth box gets its own prior, the assignment that
    minimises the total L2 distance between matched priors and boxes (Hungarian algorithm).
    One prior per box keeps the confidence targets sparse, as the paper's loss expects.
  * 'best' (arXiv:1412.1441): each ground-truth box is matched to the prior of highest IoU,
    and additionally every prior whose IoU with some box is at least `iou_threshold` is
    matched to that box: more positives per box, which helps when K is large.
Either way the targets are fixed per image: `targets(...)` gives a [K] 0/1 match mask and
[K, 4] target offsets (ground truth minus prior, zero where unmatched).

Loss (Erhan et al., equation 3): F = alpha * F_loc + F_conf with
  F_loc  = 1/2 sum_i x_i ||prior_i + offset_i - g_match(i)||^2   (matched priors only)
  F_conf = -sum_i [x_i log c_i + (1 - x_i) log(1 - c_i)]          (every prior, logistic)
averaged over the images of a batch; alpha is `location_weight` in the config.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from detection import boxes as box_ops
from detection.config import MATCHINGS


def normalise(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
  """Pixel boxes (the package convention) -> [0, 1] image-normalised boxes."""
  return box_ops.as_boxes(boxes) / np.array([width, height, width, height], np.float64)


def denormalise(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
  return np.asarray(boxes, np.float64) * np.array([width, height, width, height], np.float64)


def kmeans_priors(boxes: np.ndarray, k: int, *, seed: int = 0, iterations: int = 100) -> np.ndarray:
  """K prior boxes [k, 4] (float32): k-means of normalised ground-truth boxes [N, 4].

  k-means++ seeding; a cluster that loses all its boxes is re-seeded with the box farthest
  from its centre, so every prior stays a real cluster. Needs at least k distinct boxes.
  """
  points = np.asarray(boxes, np.float64).reshape(-1, 4)
  distinct = len(np.unique(points, axis=0))
  if k < 1 or distinct < k:
    raise ValueError(
        f"k-means priors: need 1 <= k <= the number of distinct training boxes; k={k}, "
        f"{distinct} distinct boxes. Lower detection.multibox.num_priors."
    )
  rng = np.random.default_rng(seed)
  centres = [points[rng.integers(len(points))]]
  for _ in range(1, k):
    squared = np.min(((points[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
    centres.append(points[rng.choice(len(points), p=squared / squared.sum())])
  centres = np.asarray(centres)
  for _ in range(iterations):
    squared = ((points[:, None] - centres[None]) ** 2).sum(-1)
    nearest = np.argmin(squared, axis=1)
    updated = centres.copy()
    for cluster in range(k):
      members = points[nearest == cluster]
      if len(members):
        updated[cluster] = members.mean(axis=0)
      else:  # empty: take the box worst served by its current centre
        farthest = np.argmax(squared[np.arange(len(points)), nearest])
        updated[cluster] = points[farthest]
        nearest[farthest] = cluster
    if np.allclose(updated, centres):
      break
    centres = updated
  return centres.astype(np.float32)


def match(
    priors: np.ndarray, truth: np.ndarray, matching: str = "bipartite", iou_threshold: float = 0.5
) -> np.ndarray:
  """For each prior, the index of its ground-truth box, or -1 (both normalised)."""
  if matching not in MATCHINGS:
    raise ValueError(f"multibox matching={matching!r}: choose one of {MATCHINGS}")
  priors, truth = np.asarray(priors, np.float64), np.asarray(truth, np.float64).reshape(-1, 4)
  assigned = np.full(len(priors), -1, np.int64)
  if not len(truth):
    return assigned
  if matching == "bipartite":
    cost = ((priors[:, None] - truth[None]) ** 2).sum(-1)  # [K, G]
    rows, cols = optimize.linear_sum_assignment(cost)
    assigned[rows] = cols
    return assigned
  iou = box_ops.iou_matrix(priors, truth)  # [K, G]
  best_box = np.argmax(iou, axis=1)
  above = iou[np.arange(len(priors)), best_box] >= iou_threshold
  assigned[above] = best_box[above]
  assigned[np.argmax(iou, axis=0)] = np.arange(len(truth))  # every box gets its best prior
  return assigned


@dataclasses.dataclass(frozen=True)
class Targets:
  matched: np.ndarray  # float32 [K]: 1 for priors matched to a ground-truth box
  offsets: np.ndarray  # float32 [K, 4]: ground truth minus prior where matched, else 0


def targets(
    priors: np.ndarray, truth: np.ndarray, matching: str = "bipartite", iou_threshold: float = 0.5
) -> Targets:
  """Training targets of one image from its normalised ground-truth boxes."""
  assigned = match(priors, truth, matching, iou_threshold)
  matched = assigned >= 0
  offsets = np.zeros((len(priors), 4), np.float32)
  if matched.any():
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    offsets[matched] = truth[assigned[matched]] - np.asarray(priors, np.float64)[matched]
  return Targets(matched.astype(np.float32), offsets)


def loss_terms(
    predicted_offsets: jax.Array,
    confidence_logits: jax.Array,
    matched: jax.Array,
    target_offsets: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """Per image: F_loc and F_conf, each [B]; shapes [B, K, 4], [B, K], [B, K], [B, K, 4].

  The prediction is prior + predicted offset and the target prior + target offset, so the
  location term is the squared difference of the offsets.
  """
  predicted_offsets = predicted_offsets.astype(jnp.float32)
  location = 0.5 * jnp.sum(matched * jnp.sum((predicted_offsets - target_offsets) ** 2, -1), -1)
  logits = confidence_logits.astype(jnp.float32)
  # -[x log sigmoid(z) + (1 - x) log(1 - sigmoid(z))], computed stably.
  confidence = jnp.sum(jax.nn.softplus(logits) - matched * logits, axis=-1)
  return location, confidence


def loss(
    predicted_offsets: jax.Array,
    confidence_logits: jax.Array,
    matched: jax.Array,
    target_offsets: jax.Array,
    location_weight: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean over the batch of alpha * F_loc + F_conf (see `loss_terms`)."""
  location, confidence = loss_terms(predicted_offsets, confidence_logits, matched, target_offsets)
  total = location_weight * location + confidence
  return jnp.mean(total), {
      "location_loss": jnp.mean(location),
      "confidence_loss": jnp.mean(confidence),
  }


def decode(
    priors: np.ndarray,
    predicted_offsets: np.ndarray,
    confidence_logits: np.ndarray,
    height: int,
    width: int,
    *,
    top_n: int = 200,
    nms_iou: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
  """One image's proposals: pixel boxes [n, 4] and confidences [n], n <= top_n, best first.

  Boxes are prior + offset, clipped to the image; boxes that collapse to no area are dropped;
  greedy NMS at `nms_iou` removes near duplicates before the top N are kept (the paper keeps
  the 200 most confident).
  """
  normalised = np.clip(np.asarray(priors, np.float64) + predicted_offsets, 0.0, 1.0)
  pixels = denormalise(normalised, height, width)
  scores = 1.0 / (1.0 + np.exp(-np.asarray(confidence_logits, np.float64)))
  keep = np.flatnonzero(box_ops.areas(pixels) > 0)
  pixels, scores = pixels[keep], scores[keep]
  kept = box_ops.nms(pixels, scores, nms_iou)[:top_n]
  return pixels[kept].astype(np.float32), scores[kept].astype(np.float32)
