"""The same train step on 1 device and on 8 simulated devices (tests/conftest.py) agrees."""

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from configs import digits
from inception import create_model_from_config
from train import schedule
from train.losses import topk_correct
from train.optim import create_optimizer
from train.state import create_train_state
from train.step import make_eval_step, make_train_step


def run_step(devices, config, batch):
  mesh = Mesh(np.array(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  replicated = NamedSharding(mesh, PartitionSpec())
  model = create_model_from_config(config.model)
  lr_fn = schedule.create_learning_rate_fn(config, 1437)
  tx = create_optimizer(config, lr_fn)

  def init(rng):
    variables = model.init({"params": rng}, jnp.zeros((1, 32, 32, 3)))
    return create_train_state(variables, tx)

  state = jax.jit(init, out_shardings=replicated)(jax.random.key(0))
  sharded = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
  step = jax.jit(make_train_step(model, tx, lr_fn, config), out_shardings=(replicated, replicated))
  state, metrics = step(state, sharded, jax.random.key(1))
  return jax.device_get(state.params), jax.device_get(metrics)


def relu_kink_margin(model, image):
  """How close the training forward pass of `image` comes to a ReLU's kink: the smallest |input|
  of any ReLU, in units of its layer's spread (the standardised BatchNorm input; the aux heads'
  hidden layer as it is).

  ReLU's gradient jumps at 0, so an input within rounding of 0 (a few 1e-7 of its scale) lets
  any change of summation order, such as another device count, a permuted batch or another
  XLA optimisation level, flip that element's gradient on or off. Traced once (digits, width
  1/8, batch 128): one input at -1.03e-6 moved inception_4d/5x5_reduce's BatchNorm bias
  gradient by 13% on a single device when the batch was merely permuted, and ~50 of 187
  parameters by over 1e-4 after one step, with the CPU formulations and XLA's ops alike.
  """

  def forward(image):
    variables = model.init({"params": jax.random.key(0)}, image[:1])
    return model.apply(
        variables,
        image,
        train=True,
        mutable=["batch_stats", "intermediates"],
        capture_intermediates=lambda module, _: module.name in ("conv", "fc"),
    )[1]

  state = jax.jit(forward)(image)
  margins = []
  for path, value in jax.tree_util.tree_leaves_with_path(state["intermediates"]):
    layer = path[-3].key if len(path) >= 3 else None  # [..., layer, '__call__', 0]
    if layer not in ("conv", "fc"):  # pooled features that the top module keeps, say
      continue
    value = np.asarray(value, np.float64)
    if layer == "conv":  # BatchNorm's input: standardise per channel
      axes = tuple(range(value.ndim - 1))
      value = (value - value.mean(axes)) / np.sqrt(value.var(axes) + model.bn_epsilon)
    margins.append(np.abs(value).min())
  return min(margins)


def test_one_and_eight_devices_agree():
  """One step on 8 devices equals one device, CPU formulations included ('auto' on CPU)."""
  assert jax.device_count() == 8, "tests/conftest.py should simulate 8 CPU devices"
  config = digits.get_config()
  config.model.width = 0.125
  config.model.dropout_rate = 0.0  # dropout masks are drawn per shard layout; compare the rest
  config.model.aux_dropout_rate = 0.0
  rng = np.random.default_rng(0)
  batch = {
      "image": rng.standard_normal((16, 32, 32, 3)).astype(np.float32),
      "label": rng.integers(0, 10, 16).astype(np.int32),
  }
  # Equality to 1e-4 holds only away from ReLU's kink (see relu_kink_margin): the input that
  # flipped sat at 1e-6, this batch's closest (3b's 3x3_reduce) at 1.25e-5. Another seed if
  # this fails.
  margin = relu_kink_margin(create_model_from_config(config.model), batch["image"])
  assert margin > 1e-5, f"the test batch comes within {margin:.1e} of a ReLU kink"
  params_1, metrics_1 = run_step(jax.devices()[:1], config, batch)
  params_8, metrics_8 = run_step(jax.devices(), config, batch)
  np.testing.assert_allclose(metrics_1["loss"], metrics_8["loss"], rtol=1e-5)
  np.testing.assert_allclose(metrics_1["grad_norm"], metrics_8["grad_norm"], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_topk_correct_ranks_like_lax_top_k_ties_included():
  rng = np.random.default_rng(1)
  # Logits on a coarse grid, so many examples hold exact ties at the label's value.
  logits = jnp.asarray(rng.integers(0, 4, size=(512, 10)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 10, size=512))
  for k in (1, 5, 10):
    _, top = jax.lax.top_k(logits, k)
    expected = np.any(np.asarray(top) == np.asarray(labels)[:, None], axis=-1)
    np.testing.assert_array_equal(np.asarray(topk_correct(logits, labels, k)), expected)


def test_eval_step_keeps_the_batch_sharded():
  """Only the sums cross devices: no all-gather of the logits (XLA's TopK is not batch-split)."""
  config = digits.get_config()
  config.model.width = 0.125
  mesh = Mesh(np.array(jax.devices()), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  model = create_model_from_config(config.model)
  variables = jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)))
  )
  sharded = NamedSharding(mesh, PartitionSpec("data"))
  batch = {
      "image": jax.ShapeDtypeStruct((48, 32, 32, 3), jnp.float32, sharding=sharded),
      "label": jax.ShapeDtypeStruct((48,), jnp.int32, sharding=sharded),
      "mask": jax.ShapeDtypeStruct((48,), jnp.bool_, sharding=sharded),
  }
  replicated = NamedSharding(mesh, PartitionSpec())
  variables = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), variables
  )
  compiled = (
      jax.jit(make_eval_step(model), out_shardings=replicated).lower(variables, batch).compile()
  )
  text = compiled.as_text()
  assert "all-gather" not in text
  assert text.count("all-reduce(") == 1  # the four sums, combined
