"""BatchNormReLU against flax's nn.BatchNorm followed by nn.relu: same variables, outputs,
running statistics and gradients (including through the returned batch statistics)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.batch_norm_relu import BatchNormReLU, batch_norm_relu

MOMENTUM, EPSILON = 0.9, 1e-3


class FlaxBatchNormReLU(nn.Module):
  use_running_average: bool = False

  @nn.compact
  def __call__(self, x):
    y = nn.BatchNorm(
        use_running_average=self.use_running_average, momentum=MOMENTUM, epsilon=EPSILON
    )(x)
    return nn.relu(y)


def _input(shape, seed=0, offset=0.5):
  return jnp.asarray(np.random.default_rng(seed).normal(offset, 2.0, shape), jnp.float32)


def _variables(channels, seed=1):
  rng = np.random.default_rng(seed)
  return {
      "params": {
          "scale": jnp.asarray(rng.uniform(0.5, 1.5, channels), jnp.float32),
          "bias": jnp.asarray(rng.normal(0, 1, channels), jnp.float32),
      },
      "batch_stats": {
          "mean": jnp.asarray(rng.normal(0, 1, channels), jnp.float32),
          "var": jnp.asarray(rng.uniform(0.5, 2, channels), jnp.float32),
      },
  }


def test_same_variables_as_flax_batch_norm():
  x = jnp.zeros((2, 3, 3, 5))
  ours = BatchNormReLU().init(jax.random.key(0), x)
  theirs = nn.BatchNorm(use_running_average=False).init(jax.random.key(0), x)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), ours) == jax.tree.map(
      lambda a: (a.shape, a.dtype), theirs
  )
  np.testing.assert_array_equal(ours["params"]["scale"], theirs["params"]["scale"])
  np.testing.assert_array_equal(ours["batch_stats"]["var"], theirs["batch_stats"]["var"])


@pytest.mark.parametrize("train", [True, False])
def test_forward_and_running_statistics_match_flax(train):
  x, variables = _input((4, 6, 5, 7)), _variables(7)
  ours = BatchNormReLU(use_running_average=not train, momentum=MOMENTUM, epsilon=EPSILON)
  theirs = FlaxBatchNormReLU(use_running_average=not train)
  their_variables = {
      "params": {"BatchNorm_0": variables["params"]},
      "batch_stats": {"BatchNorm_0": variables["batch_stats"]},
  }
  y, updates = ours.apply(variables, x, mutable=["batch_stats"])
  y_ref, updates_ref = theirs.apply(their_variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  assert float(jnp.mean(y == 0)) > 0.2  # the ReLU is exercised
  for name in ("mean", "var"):
    np.testing.assert_allclose(
        updates["batch_stats"][name],
        updates_ref["batch_stats"]["BatchNorm_0"][name],
        rtol=1e-5,
        atol=1e-6,
    )


def _flax_batch_norm_relu_with_stats(x, scale, bias):
  y, updates = FlaxBatchNormReLU().apply(
      {
          "params": {"BatchNorm_0": {"scale": scale, "bias": bias}},
          "batch_stats": {
              "BatchNorm_0": {"mean": jnp.zeros_like(scale), "var": jnp.zeros_like(scale)}
          },
      },
      x,
      mutable=["batch_stats"],
  )
  stats = updates["batch_stats"]["BatchNorm_0"]
  # Running averages from zero are (1 - momentum) x the batch statistics.
  return y, stats["mean"] / (1 - MOMENTUM), stats["var"] / (1 - MOMENTUM)


@pytest.mark.parametrize("shape", [(4, 6, 5, 7), (2, 9, 3), (8, 16)])
def test_gradients_match_jax_grad_of_flax(shape):
  x, variables = _input(shape, seed=2), _variables(shape[-1], seed=3)
  scale, bias = variables["params"]["scale"], variables["params"]["bias"]
  rng = np.random.default_rng(4)
  g = jnp.asarray(rng.normal(size=shape), jnp.float32)
  g_mean = jnp.asarray(rng.normal(size=shape[-1]), jnp.float32)
  g_var = jnp.asarray(rng.normal(size=shape[-1]), jnp.float32)

  def loss(fn):
    def value(x, scale, bias):
      y, mean, var = fn(x, scale, bias)
      return jnp.sum(y * g) + jnp.sum(mean * g_mean) + jnp.sum(var * g_var)

    return jax.grad(value, argnums=(0, 1, 2))

  ours = loss(lambda x, s, b: batch_norm_relu(x, s, b, EPSILON))(x, scale, bias)
  theirs = loss(_flax_batch_norm_relu_with_stats)(x, scale, bias)
  for got, want in zip(ours, theirs):
    assert float(jnp.max(jnp.abs(want))) > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(want))))


def test_bfloat16_activations_float32_statistics():
  x = _input((4, 5, 5, 6)).astype(jnp.bfloat16)
  variables = BatchNormReLU(dtype=jnp.bfloat16).init(jax.random.key(0), x)
  y, updates = BatchNormReLU(dtype=jnp.bfloat16).apply(variables, x, mutable=["batch_stats"])
  assert y.dtype == jnp.bfloat16
  assert updates["batch_stats"]["mean"].dtype == jnp.float32
  grads = jax.grad(
      lambda p: jnp.sum(
          BatchNormReLU(dtype=jnp.bfloat16)
          .apply(
              {"params": p, "batch_stats": variables["batch_stats"]}, x, mutable=["batch_stats"]
          )[0]
          .astype(jnp.float32)
      )
  )(variables["params"])
  assert grads["scale"].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(grads["scale"])))
