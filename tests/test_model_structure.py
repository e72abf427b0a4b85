"""Full-size structure of every variant, checked without compute via jax.eval_shape."""

import jax
import jax.numpy as jnp
import pytest

from inception import create_model, paper

VARIANTS = ["paper", "bn", "torchvision", "slim"]
INCEPTION_DEPTHS = {
    "3a": 256,
    "3b": 480,
    "4a": 512,
    "4b": 512,
    "4c": 512,
    "4d": 528,
    "4e": 832,
    "5a": 832,
    "5b": 1024,
}
INCEPTION_SIZES = {"3": 28, "4": 14, "5": 7}


def shapes_at_224(variant, **overrides):
  model = create_model(variant, **overrides)
  images = jnp.zeros((1, 224, 224, 3))
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  return model, jax.eval_shape(lambda: model.init(rngs, images, capture_intermediates=True))


@pytest.fixture(scope="module", params=VARIANTS)
def variant_shapes(request):
  return request.param, *shapes_at_224(request.param)


def out_shape(intermediates, name):
  return tuple(intermediates[name]["__call__"][0].shape[1:])


def test_stage_shapes_follow_table_1(variant_shapes):
  _, _, shapes = variant_shapes
  inter = shapes["intermediates"]
  assert out_shape(inter, "conv1") == (112, 112, 64)
  assert out_shape(inter, "pool1") == (56, 56, 64)
  assert out_shape(inter, "conv2") == (56, 56, 192)
  assert out_shape(inter, "pool2") == (28, 28, 192)
  assert out_shape(inter, "pool3") == (14, 14, 480)
  assert out_shape(inter, "pool4") == (7, 7, 832)
  for tag, depth in INCEPTION_DEPTHS.items():
    size = INCEPTION_SIZES[tag[0]]
    assert out_shape(inter, f"inception_{tag}") == (size, size, depth), tag
  assert inter["pool5"][0].shape == (1, 1024)
  assert out_shape(inter, "classifier") == (1000,)


def expected_inception_weights(channels, in_channels, kernel5x5):
  c = channels
  return (
      in_channels * c.conv1x1
      + in_channels * c.reduce3x3
      + 9 * c.reduce3x3 * c.conv3x3
      + in_channels * c.reduce5x5
      + kernel5x5**2 * c.reduce5x5 * c.conv5x5
      + in_channels * c.pool_proj
  )


def test_inception_weight_counts_follow_channel_columns(variant_shapes):
  variant, model, shapes = variant_shapes
  in_channels = 192
  for tag, channels in paper.INCEPTION_CHANNELS.items():
    module = shapes["params"][f"inception_{tag}"]
    kernels = sum(
        leaf.size
        for path, leaf in jax.tree_util.tree_leaves_with_path(module)
        if path[-1].key == "kernel"
    )
    assert kernels == expected_inception_weights(channels, in_channels, model.conv5x5_kernel), tag
    in_channels = channels.out_channels


def test_inception_params_with_biases_or_bn(variant_shapes):
  variant, model, shapes = variant_shapes
  module = shapes["params"]["inception_3a"]
  weights = expected_inception_weights(paper.INCEPTION_CHANNELS["3a"], 192, model.conv5x5_kernel)
  # BN scale+offset, BN offset only (slim), or one conv bias.
  per_channel = 1 + (model.batch_norm and model.bn_scale)
  total = sum(leaf.size for leaf in jax.tree.leaves(module))
  assert total == weights + per_channel * (64 + 96 + 128 + 16 + 32 + 32)


def test_torchvision_layout_parameter_count():
  _, shapes = shapes_at_224("torchvision", aux_heads=False)
  # torchvision's googlenet(aux_logits=False) has 6,624,904 parameters (docs/paper_notes.md, "Reference variants").
  assert sum(leaf.size for leaf in jax.tree.leaves(shapes["params"])) == 6_624_904


def test_aux_parameters_exist_after_inference_mode_init(variant_shapes):
  _, _, shapes = variant_shapes
  for head in ("aux_4a", "aux_4d"):
    params = shapes["params"][head]
    # 4x4 grid of 128 channels feeds fc 1024 at 224x224, in both pooling styles.
    assert params["fc"]["kernel"].shape == (4 * 4 * 128, 1024)
    assert params["classifier"]["kernel"].shape == (1024, 1000)


def test_width_multiplier_scales_every_layer():
  _, shapes = shapes_at_224("paper", width=0.5)
  params = shapes["params"]
  assert params["conv1"]["conv"]["kernel"].shape == (7, 7, 3, 32)
  assert params["inception_5b"]["1x1"]["conv"]["kernel"].shape[-1] == 192
  assert shapes["intermediates"]["pool5"][0].shape == (1, 512)
  assert params["classifier"]["kernel"].shape == (512, 1000)


def test_paper_variant_is_true_to_caffe():
  model, shapes = shapes_at_224("paper")
  params = shapes["params"]
  assert params["inception_3a"]["5x5"]["conv"]["kernel"].shape == (5, 5, 16, 32)
  assert "bias" in params["conv1"]["conv"] and "batch_stats" not in shapes
  assert model.dropout_rate == 0.4 and model.aux_dropout_rate == 0.7


def test_torchvision_variant_quirks():
  model, shapes = shapes_at_224("torchvision")
  assert shapes["params"]["inception_3a"]["5x5"]["conv"]["kernel"].shape == (3, 3, 16, 32)
  assert "bias" not in shapes["params"]["conv1"]["conv"]
  assert model.bn_epsilon == 1e-3 and model.pool4_window == 2 and model.dropout_rate == 0.2


def test_slim_variant_quirks():
  model, shapes = shapes_at_224("slim", num_classes=1001, aux_heads=False)
  params = shapes["params"]
  assert params["inception_5a"]["5x5"]["conv"]["kernel"].shape == (3, 3, 32, 128)
  assert set(params["conv1"]["bn"]) == {"bias"}  # no scale: slim's batch_norm(scale=False)
  assert model.padding == "same" and model.bn_momentum == 0.9997 and model.pool4_window == 2
  # TF-slim's own graph has the same trainable count (tests/test_slim_import.py).
  assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 6_618_649


def test_param_dtype_knob():
  _, shapes = shapes_at_224("bn", param_dtype="bfloat16")
  assert {leaf.dtype for leaf in jax.tree.leaves(shapes["params"])} == {jnp.dtype("bfloat16")}


def test_unknown_variant_and_field_are_named():
  with pytest.raises(ValueError, match="'resnet'"):
    create_model("resnet")
  with pytest.raises(ValueError, match="widht"):
    create_model("paper", widht=0.5)
  with pytest.raises(ValueError, match="aux_pool"):
    create_model("paper", aux_pool="max")


def test_caffe_initialisation():
  from tests.test_model_behaviour import NARROW, init

  params = init(create_model("paper", **NARROW))[0]["params"]
  kernel = params["inception_4a"]["3x3"]["conv"]["kernel"]
  fan_in = 3 * 3 * kernel.shape[2]
  assert float(jnp.max(jnp.abs(kernel))) <= (3.0 / fan_in) ** 0.5
  assert float(jnp.std(kernel)) == pytest.approx((1.0 / fan_in) ** 0.5, rel=0.1)
  assert jnp.all(params["conv1"]["conv"]["bias"] == 0.2)
  assert jnp.all(params["aux_4a"]["fc"]["bias"] == 0.2)
  for classifier in (params["classifier"], params["aux_4a"]["classifier"]):
    assert jnp.all(classifier["bias"] == 0.0)
