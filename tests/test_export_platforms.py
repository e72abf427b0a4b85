"""The programs a GPU or TPU would run, lowered here with `jax.export` (no device needed).

With `model.kernels='auto'` the CPU formulations (1x1 convolutions as matmuls, the max-pool
gradient without select_and_scatter; kernels/select.py) must be in a program lowered for
CPU and in no program lowered for CUDA or TPU, and bfloat16 compute must reach every
convolution and matmul. Full size: 224 px, batch 256, traced from abstract shapes only.
"""

import collections
import functools
import re

import jax
import jax.numpy as jnp
import pytest

from configs import googlenet
from eval import scoring
from inception import create_model
from kernels.select import CPU_SCOPE
from train import schedule
from train.optim import create_optimizer
from train.state import create_train_state
from train.step import make_eval_step, make_train_step

BATCH, SIZE = 256, 224
COUNTED = ("convolution", "dot_general", "select_and_scatter", "reduce_window")


def op_counts(module: str) -> dict[str, int]:
  ops = collections.Counter(re.findall(r"stablehlo\.([a-z_]+)", module))
  return {op: ops[op] for op in COUNTED}


def operand_types(module: str, op: str) -> collections.Counter:
  """(lhs element type, rhs element type) of every `op` in the module."""
  types = collections.Counter()
  for line in module.splitlines():
    if f"stablehlo.{op}" in line:
      match = re.search(
          r":\s*\(tensor<(?:[^>]*x)?([a-z]\w*)>, tensor<(?:[^>]*x)?([a-z]\w*)>\)", line
      )
      assert match, line
      types[match.groups()] += 1
  return types


def assert_no_host_callback(module: str) -> None:
  targets = set(re.findall(r"custom_call @([\w.]+)", module))
  assert not any("callback" in target for target in targets), targets


@functools.cache
def train_module(
    variant: str, platform: str, kernels: str = "auto", dtype: str = "bfloat16"
) -> str:
  config = googlenet.get_config()
  model = create_model(variant, dtype=dtype, kernels=kernels)
  learning_rate_fn = schedule.create_learning_rate_fn(config, 1_281_167)
  tx = create_optimizer(config, learning_rate_fn)
  state = jax.eval_shape(
      lambda rng: create_train_state(
          model.init({"params": rng, "dropout": rng}, jnp.zeros((1, SIZE, SIZE, 3)), train=False),
          tx,
      ),
      jax.random.key(0),
  )
  batch = {
      "image": jax.ShapeDtypeStruct((BATCH, SIZE, SIZE, 3), jnp.float32),
      "label": jax.ShapeDtypeStruct((BATCH,), jnp.int32),
  }
  step = functools.partial(
      make_train_step(model, tx, learning_rate_fn, config), dropout_rng=jax.random.key(1)
  )
  return jax.export.export(jax.jit(step), platforms=(platform,))(state, batch).mlir_module()


@pytest.mark.parametrize(
    "variant,platform", [("paper", "cuda"), ("bn", "cuda"), ("torchvision", "cuda"), ("bn", "tpu")]
)
def test_accelerator_training_step_holds_xla_ops_only(variant, platform):
  module = train_module(variant, platform)
  assert CPU_SCOPE not in module
  # Exactly the program of XLA's own ops (kernels='xla'): every convolution a convolution,
  # max-pool gradients as select_and_scatter.
  assert op_counts(module) == op_counts(train_module(variant, "cpu", kernels="xla"))
  assert op_counts(module)["select_and_scatter"] == 13  # 4 strided pools + 9 inception pools
  assert_no_host_callback(module)
  assert set(operand_types(module, "convolution")) == {("bf16", "bf16")}
  dots = operand_types(module, "dot_general")
  # float32 by design: the paper's aux-head 5x5/3 average pool, a matmul with a float32
  # pooling matrix (1/25 is not a bfloat16 number; inception/layers.py valid_avg_pool),
  # forward and input gradient in each of the two heads (TPU lowers the gradient with one
  # bfloat16 operand).
  aux_pool_dots = 4 if create_model(variant).aux_pool == "caffe" else 0
  assert sum(n for types, n in dots.items() if "f32" in types) == aux_pool_dots
  assert sum(dots.values()) - aux_pool_dots == dots[("bf16", "bf16")] > 0


def test_cpu_training_step_keeps_the_cpu_formulations():
  module = train_module("bn", "cpu")
  assert CPU_SCOPE in module
  counts, xla = op_counts(module), op_counts(train_module("bn", "cpu", kernels="xla"))
  assert counts["select_and_scatter"] == 0 < xla["select_and_scatter"]
  assert counts["convolution"] < xla["convolution"] and counts["dot_general"] > xla["dot_general"]


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_accelerator_evaluation_and_144_crop_forward_hold_xla_ops_only(platform):
  model = create_model("bn", dtype="bfloat16")
  variables = jax.eval_shape(
      lambda rng: model.init(rng, jnp.zeros((1, SIZE, SIZE, 3))), jax.random.key(0)
  )
  batch = {
      "image": jax.ShapeDtypeStruct((BATCH, SIZE, SIZE, 3), jnp.float32),
      "label": jax.ShapeDtypeStruct((BATCH,), jnp.int32),
      "mask": jax.ShapeDtypeStruct((BATCH,), jnp.bool_),
  }
  crops = jax.ShapeDtypeStruct((2, 144, SIZE, SIZE, 3), jnp.float32)
  weights = jax.ShapeDtypeStruct((1, 144), jnp.float32)
  multi_crop = lambda v, images, w: scoring.crop_scores(model, v, images, w, "mean_softmax", 16)
  # float32 dots by design: none in the evaluation step; in the multi-crop forward, the one
  # that averages the views' softmax probabilities per crop scheme (eval/scoring.py).
  for function, args, float32_dots in (
      (make_eval_step(model), (variables, batch), 0),
      (multi_crop, (variables, crops, weights), 1),
  ):
    module = jax.export.export(jax.jit(function), platforms=(platform,))(*args).mlir_module()
    assert CPU_SCOPE not in module
    assert_no_host_callback(module)
    # Every convolution of the inference network (57: no aux heads), 1x1 included.
    assert op_counts(module)["convolution"] == 57
    assert set(operand_types(module, "convolution")) == {("bf16", "bf16")}
    dots = operand_types(module, "dot_general")
    assert dots[("f32", "f32")] == float32_dots and dots[("bf16", "bf16")] >= 1
    assert sum(dots.values()) == float32_dots + dots[("bf16", "bf16")]
