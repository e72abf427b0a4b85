"""MultiBox priors, matching, loss and decoding on hand-built cases (detection/multibox.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from detection import multibox

PRIORS = np.array(
    [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.25, 0.25, 0.75, 0.75]],
    np.float32,
)


def test_kmeans_priors_find_well_separated_clusters_and_are_seeded():
  rng = np.random.default_rng(0)
  centres = np.array([[0.1, 0.1, 0.3, 0.3], [0.6, 0.1, 0.9, 0.4], [0.2, 0.5, 0.8, 0.95]])
  boxes = np.concatenate([c + rng.normal(0, 0.01, (50, 4)) for c in centres])
  priors = multibox.kmeans_priors(boxes, 3, seed=1)
  order = np.argsort(priors[:, 0] + priors[:, 1])
  np.testing.assert_allclose(
      priors[order], centres[np.argsort(centres[:, 0] + centres[:, 1])], atol=0.01
  )
  np.testing.assert_array_equal(priors, multibox.kmeans_priors(boxes, 3, seed=1))
  with pytest.raises(ValueError, match="num_priors"):
    multibox.kmeans_priors(boxes[:2], 3)


def test_bipartite_matching_gives_each_box_its_own_nearest_prior():
  truth = np.array([[0.26, 0.24, 0.74, 0.76], [0.0, 0.0, 0.45, 0.5]])
  assigned = multibox.match(PRIORS, truth, "bipartite")
  assert assigned[3] == 0 and assigned[0] == 1 and (assigned[[1, 2]] == -1).all()
  # Two boxes nearest the same prior still get two different priors.
  both_near_0 = np.array([[0.0, 0.0, 0.5, 0.5], [0.01, 0.0, 0.5, 0.5]])
  assigned = multibox.match(PRIORS, both_near_0, "bipartite")
  matched_priors = np.flatnonzero(assigned >= 0)
  assert len(matched_priors) == 2 and 0 in matched_priors
  assert sorted(assigned[matched_priors]) == [0, 1]


def test_best_matching_adds_every_prior_above_the_iou_threshold():
  truth = np.array([[0.0, 0.0, 0.55, 0.55]])
  best_only = multibox.match(PRIORS, truth, "best", iou_threshold=0.99)
  np.testing.assert_array_equal(best_only, [0, -1, -1, -1])
  generous = multibox.match(PRIORS, truth, "best", iou_threshold=0.1)
  assert generous[0] == 0 and generous[3] == 0  # the centre prior overlaps it too
  assert (multibox.match(PRIORS, np.zeros((0, 4)), "best") == -1).all()


def test_confidence_targets_are_one_exactly_on_matched_priors():
  truth = np.array([[0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0]])
  targets = multibox.targets(PRIORS, truth)
  np.testing.assert_array_equal(targets.matched, [0, 1, 1, 0])
  np.testing.assert_array_equal(targets.offsets[[0, 3]], 0)


def test_ground_truth_exactly_on_a_prior_has_zero_location_loss():
  truth = PRIORS[[2]]
  targets = multibox.targets(PRIORS, truth)
  np.testing.assert_array_equal(targets.offsets, 0)
  zeros = jnp.zeros((1, 4, 4))
  logits = jnp.zeros((1, 4))
  _, parts = multibox.loss(zeros, logits, targets.matched[None], targets.offsets[None], 1.0)
  assert float(parts["location_loss"]) == 0.0
  # An offset off by 0.1 in one coordinate of the matched prior costs 1/2 * 0.1^2.
  off = zeros.at[0, 2, 0].set(0.1)
  _, parts = multibox.loss(off, logits, targets.matched[None], targets.offsets[None], 1.0)
  assert float(parts["location_loss"]) == pytest.approx(0.005, rel=1e-5)
  # Unmatched priors' offsets cost nothing.
  _, parts = multibox.loss(
      zeros.at[0, 1].set(0.3), logits, targets.matched[None], targets.offsets[None], 1.0
  )
  assert float(parts["location_loss"]) == 0.0


def test_confidence_loss_is_the_logistic_loss_of_every_prior():
  matched = jnp.array([[1.0, 0.0, 0.0, 1.0]])
  logits = jnp.array([[2.0, -1.0, 0.5, 0.0]])
  total, parts = multibox.loss(jnp.zeros((1, 4, 4)), logits, matched, jnp.zeros((1, 4, 4)), 0.3)
  p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5, 0.0])))
  expected = -(np.log(p[0]) + np.log(1 - p[1]) + np.log(1 - p[2]) + np.log(p[3]))
  assert float(parts["confidence_loss"]) == pytest.approx(expected, rel=1e-5)
  assert float(total) == pytest.approx(expected, rel=1e-5)  # no location term here


def test_decode_inverts_the_targets_and_keeps_the_most_confident():
  truth = np.array([[0.1, 0.2, 0.6, 0.7], [0.5, 0.5, 0.9, 1.0]])
  targets = multibox.targets(PRIORS, truth)
  logits = np.where(targets.matched > 0, 5.0, -5.0)
  boxes, scores = multibox.decode(PRIORS, targets.offsets, logits, 200, 100, top_n=2, nms_iou=0.7)
  np.testing.assert_allclose(
      sorted(boxes.tolist()), sorted(multibox.denormalise(truth, 200, 100).tolist()), atol=1e-4
  )
  assert scores.min() > 0.99 and len(boxes) == 2
