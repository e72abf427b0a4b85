"""Forward/backward behaviour of narrow models on tiny inputs (fast on 2 CPU cores)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from inception import create_model

NARROW = dict(width=0.125, num_classes=5)


@functools.cache
def _init_cached(model, size, batch):
  images = jax.random.normal(jax.random.key(3), (batch, size, size, 3))
  variables = jax.jit(model.init)(
      {"params": jax.random.key(0), "dropout": jax.random.key(1)}, images
  )
  return variables, images


def init(model, size=32, batch=2):
  """Variables and a batch, computed once per model: init compiles slowly on CPU (RNG-heavy).

  `model.apply` is jitted in these tests because eager Flax dispatch is slower still.
  """
  return _init_cached(model, size, batch)


def jit_apply(model, **static):
  """`model.apply` compiled once per mode: `static` holds train/mutable."""
  return jax.jit(
      lambda variables, images, rngs=None: model.apply(variables, images, rngs=rngs, **static)
  )


def abstract_apply(model, **static):
  """The output's shapes and dtypes, traced without compiling (a structure check needs no
  values): init and apply under `jax.eval_shape`."""
  images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(model.init, rngs, images)
  output = jax.eval_shape(
      lambda v, x: model.apply(v, x, rngs={"dropout": jax.random.key(2)}, **static),
      variables,
      images,
  )
  return variables, output


@pytest.mark.parametrize("variant", ["paper", "bn", "torchvision", "slim"])
def test_aux_heads_only_in_training_mode(variant):
  model = create_model(variant, **NARROW)
  _, output = abstract_apply(model, train=False)
  assert output.logits.shape == (2, 5) and output.logits.dtype == jnp.float32
  assert output.aux_logits == ()
  output, _ = abstract_apply(model, train=True, mutable=["batch_stats"])[1]
  assert output.logits.shape == (2, 5)
  assert len(output.aux_logits) == 2 and all(a.shape == (2, 5) for a in output.aux_logits)


def test_no_aux_heads_when_disabled():
  model = create_model("paper", aux_heads=False, **NARROW)
  variables, output = abstract_apply(model, train=True)
  assert not any(name.startswith("aux") for name in variables["params"])
  assert output.aux_logits == () and output.logits.shape == (2, 5)


def test_features_returned_beside_logits():
  model = create_model("paper", **NARROW)
  variables, images = init(model)
  output = jit_apply(model)(variables, images)
  logits, features = output.logits, output.features
  assert features.shape == (2, 128)  # 1024 * 0.125
  classifier = variables["params"]["classifier"]
  np.testing.assert_allclose(
      logits, features @ classifier["kernel"] + classifier["bias"], rtol=1e-5, atol=1e-6
  )


def test_dropout_inactive_at_inference_and_active_in_training():
  model = create_model("paper", dropout_rate=0.5, **NARROW)
  variables, images = init(model)
  infer, train = jit_apply(model), jit_apply(model, train=True)
  first = infer(variables, images, {"dropout": jax.random.key(7)}).logits
  second = infer(variables, images, {"dropout": jax.random.key(8)}).logits
  np.testing.assert_array_equal(first, second)
  train_a = train(variables, images, {"dropout": jax.random.key(7)}).logits
  train_b = train(variables, images, {"dropout": jax.random.key(8)}).logits
  assert not np.allclose(train_a, train_b)


def test_batch_norm_statistics_update_only_in_training():
  model = create_model("bn", **NARROW)
  variables, images = init(model)
  train_apply = jit_apply(model, train=True, mutable=["batch_stats"])
  _, updates = train_apply(variables, images * 3 + 1, {"dropout": jax.random.key(2)})
  before = variables["batch_stats"]["conv1"]["bn"]["mean"]
  after = updates["batch_stats"]["conv1"]["bn"]["mean"]
  assert not np.allclose(before, after)


@pytest.mark.parametrize(
    "variant,size", [("paper", 32), ("bn", 64), ("torchvision", 32), ("slim", 33)]
)
def test_jit_forward_backward_narrow_model(variant, size):
  model = create_model(variant, **NARROW)
  variables, images = init(model, size=size)
  labels = jnp.array([1, 3])
  params, batch_stats = variables["params"], variables.get("batch_stats", {})

  @jax.jit
  def loss_and_grad(params):
    def loss_fn(params):
      output, _ = model.apply(
          {"params": params, "batch_stats": batch_stats},
          images,
          train=True,
          rngs={"dropout": jax.random.key(5)},
          mutable=["batch_stats"],
      )
      logits, aux = output.logits, output.aux_logits
      losses = [
          optax.softmax_cross_entropy_with_integer_labels(head, labels).mean()
          for head in (logits, *aux)
      ]
      return losses[0] + 0.3 * sum(losses[1:])

    return jax.value_and_grad(loss_fn)(params)

  loss, grads = loss_and_grad(params)
  assert np.isfinite(float(loss))
  grad_norm = optax.tree.norm(grads)
  assert np.isfinite(float(grad_norm)) and float(grad_norm) > 0
  # Both aux heads and the classifier are wired into the loss: all their parameters get signal.
  for head in ("aux_4a", "aux_4d", "classifier"):
    for path, g in jax.tree_util.tree_leaves_with_path(grads[head]):
      assert np.any(np.asarray(g) != 0), head + jax.tree_util.keystr(path)
  # In a network this narrow a few ReLU branches can start dead; nearly all layers must learn.
  leaves = jax.tree.leaves(grads)
  assert sum(bool(np.any(np.asarray(g) != 0)) for g in leaves) >= 0.9 * len(leaves)
  # One SGD step on the same batch lowers the loss: the gradient points downhill.
  stepped = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)
  assert float(loss_and_grad(stepped)[0]) < float(loss)


def test_bfloat16_compute_keeps_float32_logits():
  model = create_model("bn", dtype="bfloat16", **NARROW)
  variables, images = init(model)
  logits = jit_apply(model)(variables, images).logits
  assert logits.dtype == jnp.float32
  params_dtypes = {leaf.dtype for leaf in jax.tree.leaves(variables["params"])}
  assert params_dtypes == {jnp.dtype("float32")}
