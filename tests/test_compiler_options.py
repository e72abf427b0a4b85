"""The training step's XLA options: CPU-only, keep convolutions out of YNNPACK, same values."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import compiler_options


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def test_no_options_off_cpu():
  assert compiler_options.train_step_options("gpu") is None
  assert compiler_options.train_step_options("tpu") is None


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU option")
def test_cpu_convolutions_leave_ynnpack_with_the_same_values():
  options = compiler_options.train_step_options("cpu")
  assert options is not None
  # At these channel counts XLA's defaults put all three convolutions in ynn fusions.
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 16))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 16, 32))
  loss = lambda x_, k_: jnp.sum(_conv(x_, k_) ** 2)
  grads = jax.jit(jax.grad(loss, (0, 1)), compiler_options=options)
  hlo = grads.lower(x, kernel).compile().as_text()
  # Every convolution (forward, input and kernel gradient) is XLA's own, not in a ynn fusion.
  ynn_bodies = re.findall(r"calls=%([\w.\-]+), .*__ynn_fusion", hlo)
  assert hlo.count(" convolution(") >= 3
  for body in ynn_bodies:
    computation = hlo[hlo.index(f"%{body} (") :]
    assert " convolution(" not in computation[: computation.index("\n}")]
  for got, want in zip(grads(x, kernel), jax.grad(loss, (0, 1))(x, kernel)):
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(np.asarray(got) / scale, np.asarray(want) / scale, rtol=0, atol=1e-5)


def test_an_option_xla_does_not_know_falls_back_to_defaults(caplog):
  assert not compiler_options._compiler_accepts((("xla_cpu_no_such_option", "1"),))
  assert "XLA rejected" in caplog.text


def test_bfloat16_warns_on_cpu_only():
  message = compiler_options.compute_dtype_warning("bfloat16", "cpu")
  assert "float32" in message and "--config.model.dtype" in message
  assert compiler_options.compute_dtype_warning("float32", "cpu") is None
  assert compiler_options.compute_dtype_warning("bfloat16", "gpu") is None
  assert compiler_options.compute_dtype_warning("bfloat16", "tpu") is None


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU option")
def test_init_options_draw_the_parameters_of_the_default_level():
  """The initial state compiles with cheaper options to start sooner; it must not change."""
  from inception import layers

  shapes = [(7, 7, 3, 64), (1, 1, 192, 64), (3, 3, 96, 128), (1024, 1000)]

  def draw(key):
    keys = jax.random.split(key, 3)
    initializers = (layers.CAFFE_XAVIER, layers.TORCHVISION_NORMAL, layers.HE_NORMAL)
    return [init(k, shape) for init, k in zip(initializers, keys) for shape in shapes]

  # The users' XLA:CPU: its default level and emitters (the suite compiles with others).
  users = {"xla_cpu_use_fusion_emitters": True}
  options = compiler_options.init_options("cpu", environ={})
  quick = jax.jit(draw, compiler_options={**users, **options})
  key = jax.random.key(3)
  for level in ("2", "3"):  # the levels above 1, XLA:CPU's default among them
    default = {**users, "xla_backend_optimization_level": level}
    for got, want in zip(quick(key), jax.jit(draw, compiler_options=default)(key), strict=True):
      np.testing.assert_array_equal(got, want)
  assert compiler_options.init_options("gpu", environ={}) is None
  assert compiler_options.init_options("tpu", environ={}) is None
  # A level the user (or this suite, tests/conftest.py) set in XLA_FLAGS is not overridden.
  flags = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
  assert compiler_options.init_options("cpu", environ=flags) is None
