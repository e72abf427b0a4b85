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


def test_multibox_network_full_size_shapes_and_parameters():
  import jax

  from inception import create_model, create_model_from_config

  images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  count = lambda tree: sum(leaf.size for leaf in jax.tree.leaves(tree))
  trunk = jax.eval_shape(
      lambda x: create_model("bn", num_classes=1, aux_heads=False).init(jax.random.key(0), x),
      images,
  )
  # The box layers read inception_5b's 7 x 7 x 1024 map, or pool5's 1024 averages.
  for layer, inputs in (("inception_5b", 7 * 7 * 1024), ("pool5", 1024)):
    model = create_model_from_config(
        {"name": "multibox", "variant": "bn", "num_priors": 200, "trunk_layer": layer}
    )
    variables = jax.eval_shape(lambda x, m=model: m.init(jax.random.key(0), x), images)
    output = jax.eval_shape(lambda v, x, m=model: m.apply(v, x), variables, images)
    assert output.offsets.shape == (2, 200, 4) and output.logits.shape == (2, 200)
    head = (inputs * 800 + 800) + (inputs * 200 + 200)  # box offsets, confidences
    assert count(variables["params"]) == count(trunk["params"]) + head
  with pytest.raises(ValueError, match="trunk_layer"):
    create_model_from_config({"name": "multibox", "trunk_layer": "inception_4e"})


def test_untrained_multibox_starts_from_its_priors_at_confidence_one_over_k():
  import jax

  from inception import create_model_from_config

  model = create_model_from_config(
      {"name": "multibox", "variant": "bn", "num_priors": 8, "width": 0.125}
  )
  images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(1), images)
  output = jax.jit(model.apply)(variables, images)
  np.testing.assert_array_equal(output.offsets, 0.0)
  np.testing.assert_allclose(jax.nn.sigmoid(output.logits), 1 / 8, rtol=1e-5)


def test_multibox_network_trains_towards_its_targets():
  import flax.linen as nn
  import jax
  import optax

  from detection import multibox_model
  from inception import GoogLeNetOutput

  class TinyTrunk(nn.Module):  # the GoogLeNet trunk is tested elsewhere; this is the head
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, *, train=False):
      features = nn.relu(nn.Dense(16)(images.reshape(images.shape[0], -1)))
      return GoogLeNetOutput(logits=features, aux_logits=(), features=features)

  model = multibox_model.MultiBox(trunk=TinyTrunk(), num_priors=4, trunk_layer="pool5")
  images = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
  variables = model.init(jax.random.key(1), images)
  truth = [np.array([[0.1, 0.2, 0.6, 0.7]]), np.array([[0.5, 0.5, 0.9, 1.0]])]
  targets = [multibox.targets(PRIORS, t) for t in truth]
  matched = jnp.stack([t.matched for t in targets])
  offsets = jnp.stack([t.offsets for t in targets])

  def loss(params):
    output = model.apply({"params": params}, images, train=True)
    return multibox.loss(output.offsets, output.logits, matched, offsets, 1.0)[0]

  tx = optax.adam(1e-2)
  params, state = variables["params"], tx.init(variables["params"])
  step = jax.jit(jax.value_and_grad(loss))
  first, grads = step(params)
  for _ in range(30):
    value, grads = step(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert np.isfinite(float(first)) and float(value) < 0.5 * float(first)
