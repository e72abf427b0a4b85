"""Importing torchvision GoogLeNet weights: our model must compute what torchvision computes.

A torchvision-layout state dict with random weights is built here (nothing is downloaded). The
reference forward pass is written from `torch.nn.functional` ops following torchvision's
models/googlenet.py, and compared with our `torchvision` variant carrying the converted weights,
on the same 224x224 images (NCHW there, NHWC here).

Tolerance: float32 end to end, ~60 layers, different conv algorithms and summation orders, so
bit equality is not expected; logits must agree to rtol=1e-4 with atol=1e-4 * max|reference|
(measured: max |diff| / max|ref| below 1e-6 in eval mode, a few 1e-5 in train mode), and the
top-1 class must agree on every image.
Tests that need PyTorch skip without it; the conversion's error checks run either way.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception import create_model, create_model_from_config, torchvision_weights
from inception.googlenet import AuxHead
from inception.layers import ConvBlock, kernel_init_by_name
from tests.weight_checks import run_import_cli

NUM_CLASSES = 10
BATCH, SIZE = 2, 224
TORCH_SKIP_REASON = (
    "PyTorch is an optional dependency (pip install torch==2.13.0, CPU build); "
    "the numerical comparison with torchvision's forward pass needs it"
)

# torchvision GoogLeNet: Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj).
TORCHVISION_INCEPTION = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}
AUX_IN_CHANNELS = {"aux1": 512, "aux2": 528}


def random_state_dict(num_classes=NUM_CLASSES, aux=True, seed=0):
  """torchvision GoogLeNet state dict (names, shapes, num_batches_tracked) with random values.

  He-scaled weights and BN statistics near (0, 1) keep activations O(1) through the network,
  so the comparison is not dominated by vanishing or exploding values.
  """
  rng = np.random.default_rng(seed)
  sd = {}

  def basic_conv(prefix, cin, cout, k):
    sd[f"{prefix}.conv.weight"] = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k))
    sd[f"{prefix}.bn.weight"] = rng.uniform(0.5, 1.5, cout)
    sd[f"{prefix}.bn.bias"] = rng.normal(0, 0.2, cout)
    sd[f"{prefix}.bn.running_mean"] = rng.normal(0, 0.2, cout)
    sd[f"{prefix}.bn.running_var"] = rng.uniform(0.5, 2.0, cout)
    sd[f"{prefix}.bn.num_batches_tracked"] = np.array(1000, np.int64)

  def linear(prefix, cin, cout):
    sd[f"{prefix}.weight"] = rng.normal(0, np.sqrt(1 / cin), (cout, cin))
    sd[f"{prefix}.bias"] = rng.normal(0, 0.1, cout)

  basic_conv("conv1", 3, 64, 7)
  basic_conv("conv2", 64, 64, 1)
  basic_conv("conv3", 64, 192, 3)
  for tag, (cin, c1, r3, c3, r5, c5, pp) in TORCHVISION_INCEPTION.items():
    basic_conv(f"inception{tag}.branch1", cin, c1, 1)
    basic_conv(f"inception{tag}.branch2.0", cin, r3, 1)
    basic_conv(f"inception{tag}.branch2.1", r3, c3, 3)
    basic_conv(f"inception{tag}.branch3.0", cin, r5, 1)
    basic_conv(f"inception{tag}.branch3.1", r5, c5, 3)
    basic_conv(f"inception{tag}.branch4.1", cin, pp, 1)
  if aux:
    for head, cin in AUX_IN_CHANNELS.items():
      basic_conv(f"{head}.conv", cin, 128, 1)
      linear(f"{head}.fc1", 2048, 1024)
      linear(f"{head}.fc2", 1024, num_classes)
  linear("fc", 1024, num_classes)
  return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}


def images_nchw(seed=1):
  return np.random.default_rng(seed).normal(0, 1, (BATCH, 3, SIZE, SIZE)).astype(np.float32)


def torch_reference(torch, sd, x, batch_statistics=False):
  """torchvision GoogLeNet (transform_input=False) from functional ops, without dropout.

  Returns (logits, aux1, aux2, features at 4a, features at 4d). By default BN uses the running
  statistics (eval mode) and the aux heads are InceptionAux in eval mode applied to the 4a / 4d
  outputs; `batch_statistics=True` is train mode with dropout switched off.
  """
  F = torch.nn.functional
  t = {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}

  def basic_conv(prefix, x, **conv_kwargs):  # BasicConv2d
    x = F.conv2d(x, t[f"{prefix}.conv.weight"], **conv_kwargs)
    running = (
        (None, None)
        if batch_statistics
        else (t[f"{prefix}.bn.running_mean"], t[f"{prefix}.bn.running_var"])
    )
    x = F.batch_norm(
        x,
        *running,
        t[f"{prefix}.bn.weight"],
        t[f"{prefix}.bn.bias"],
        training=batch_statistics,
        eps=1e-3,
    )
    return F.relu(x)

  def inception(tag, x):
    p = f"inception{tag}"
    b1 = basic_conv(f"{p}.branch1", x)
    b2 = basic_conv(f"{p}.branch2.1", basic_conv(f"{p}.branch2.0", x), padding=1)
    b3 = basic_conv(f"{p}.branch3.1", basic_conv(f"{p}.branch3.0", x), padding=1)
    b4 = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
    b4 = basic_conv(f"{p}.branch4.1", b4)
    return torch.cat([b1, b2, b3, b4], 1)

  def aux(head, x):  # InceptionAux
    x = F.adaptive_avg_pool2d(x, (4, 4))
    x = basic_conv(f"{head}.conv", x)
    x = torch.flatten(x, 1)
    x = F.relu(F.linear(x, t[f"{head}.fc1.weight"], t[f"{head}.fc1.bias"]))
    return F.linear(x, t[f"{head}.fc2.weight"], t[f"{head}.fc2.bias"])

  with torch.no_grad():
    x = torch.from_numpy(x)
    x = basic_conv("conv1", x, stride=2, padding=3)
    x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
    x = basic_conv("conv2", x)
    x = basic_conv("conv3", x, padding=1)
    x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
    x = inception("3b", inception("3a", x))
    x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
    x = features_4a = inception("4a", x)
    x = inception("4c", inception("4b", x))
    x = features_4d = inception("4d", x)
    x = inception("4e", x)
    x = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
    x = inception("5b", inception("5a", x))
    x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
    logits = F.linear(x, t["fc.weight"], t["fc.bias"])
    aux1, aux2 = aux("aux1", features_4a), aux("aux2", features_4d)
  return tuple(v.numpy() for v in (logits, aux1, aux2, features_4a, features_4d))


def our_aux_head(model, tag):
  """The AuxHead GoogLeNet builds for `tag`, as a stand-alone module.

  GoogLeNet runs its aux heads only with train=True, where BN uses batch statistics; applied on
  its own in eval mode the head uses the converted running statistics, like torchvision's eval.
  """
  kernel_init = kernel_init_by_name(model.kernel_init)
  conv = lambda *a, **k: ConvBlock(
      *a,
      batch_norm=model.batch_norm,
      bn_momentum=model.bn_momentum,
      bn_epsilon=model.bn_epsilon,
      kernel_init=kernel_init,
      bias_init_value=model.conv_bias_init,
      **k,
  )
  return AuxHead(
      num_classes=model.num_classes,
      conv=conv,
      conv_channels=128,
      hidden_units=1024,
      dropout_rate=model.aux_dropout_rate,
      pool=model.aux_pool,
      kernel_init=kernel_init,
      hidden_bias_init_value=model.conv_bias_init,
      dtype=model.dtype,
      param_dtype=model.param_dtype,
      name=f"aux_{tag}",
  )


def assert_logits_close(ours, ref):
  ours, ref = np.asarray(ours), np.asarray(ref)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
  np.testing.assert_array_equal(ours.argmax(-1), ref.argmax(-1))


def report(name, ours, ref):
  """Prints max |diff|, max |diff| / max|ref| and max elementwise |diff| / |ref| (pytest -s)."""
  abs_diff = np.abs(np.asarray(ours) - ref)
  print(
      f"{name}: max|ref|={np.abs(ref).max():.3g} max abs diff={abs_diff.max():.3g} "
      f"max abs diff / max|ref|={abs_diff.max() / np.abs(ref).max():.3g} "
      f"max elementwise rel diff={(abs_diff / np.abs(ref)).max():.3g}"
  )


@pytest.fixture(scope="module")
def torch():
  return pytest.importorskip("torch", reason=TORCH_SKIP_REASON)


@pytest.fixture(scope="module")
def state_dict():
  return random_state_dict()


@pytest.fixture(scope="module")
def model():
  return create_model("torchvision", num_classes=NUM_CLASSES, aux_heads=True)


@pytest.fixture(scope="module")
def forward(model):
  """Eval-mode logits plus the inception_4a / 4d outputs that feed the aux heads; jitted once."""

  def run(variables, images):
    output, state = model.apply(
        variables,
        images,
        train=False,
        capture_intermediates=lambda mdl, _: mdl.name in ("inception_4a", "inception_4d"),
    )
    captured = state["intermediates"]
    return (
        output.logits,
        captured["inception_4a"]["__call__"][0],
        captured["inception_4d"]["__call__"][0],
    )

  return jax.jit(run)


@pytest.fixture(scope="module")
def reference(torch, state_dict):
  return torch_reference(torch, state_dict, images_nchw())


@pytest.fixture(scope="module")
def ours(state_dict, forward):
  conversion = torchvision_weights.convert_state_dict(state_dict)
  images = jnp.asarray(images_nchw().transpose(0, 2, 3, 1))
  return conversion, forward(conversion.variables, images)


def test_logits_match_torchvision_forward(reference, ours):
  conversion, (logits, _, _) = ours
  assert conversion.model_config == {
      "variant": "torchvision",
      "num_classes": NUM_CLASSES,
      "aux_heads": True,
  }
  assert not conversion.fresh
  assert all(name.endswith(".num_batches_tracked") for name in conversion.ignored)
  assert len(conversion.ignored) == 3 + 6 * 9 + 2  # every BasicConv2d's BN
  report("eval logits", logits, reference[0])
  assert_logits_close(logits, reference[0])


def test_aux_heads_match_torchvision_forward(reference, ours, model):
  """Checks the aux conversion, fc1's (c, h, w) -> (h, w, c) input permutation included."""
  conversion, (_, features_4a, features_4d) = ours
  _, ref_aux1, ref_aux2, ref_4a, ref_4d = reference
  assert_logits_close(features_4a, ref_4a.transpose(0, 2, 3, 1))
  assert_logits_close(features_4d, ref_4d.transpose(0, 2, 3, 1))
  for tag, feats, ref in (("4a", features_4a, ref_aux1), ("4d", features_4d, ref_aux2)):
    name = f"aux_{tag}"
    variables = {col: conversion.variables[col][name] for col in ("params", "batch_stats")}
    aux_logits = jax.jit(our_aux_head(model, tag).apply)(variables, feats)
    report(f"eval {name}", aux_logits, ref)
    assert_logits_close(aux_logits, ref)


def test_training_mode_matches_torchvision_train_mode(torch, state_dict, ours):
  """The whole model with train=True (batch-statistic BN, dropout rates 0) against torchvision's
  train mode: checks that aux_4a/aux_4d are wired like aux1/aux2 and returned in that order."""
  conversion = ours[0]
  model = create_model(
      "torchvision", num_classes=NUM_CLASSES, aux_heads=True, dropout_rate=0.0, aux_dropout_rate=0.0
  )

  def apply(v, x):
    output = model.apply(v, x, train=True, mutable=["batch_stats"])[0]
    return output.logits, output.aux_logits

  apply = jax.jit(apply)
  logits, (aux_4a, aux_4d) = apply(
      conversion.variables, jnp.asarray(images_nchw().transpose(0, 2, 3, 1))
  )
  ref_logits, ref_aux1, ref_aux2, _, _ = torch_reference(
      torch, state_dict, images_nchw(), batch_statistics=True
  )
  for name, out, ref in (
      ("logits", logits, ref_logits),
      ("aux_4a", aux_4a, ref_aux1),
      ("aux_4d", aux_4d, ref_aux2),
  ):
    report(f"train-mode {name}", out, ref)
    assert_logits_close(out, ref)


def test_full_size_import_has_the_published_parameter_count():
  """1000 classes: 6,624,904 trainable parameters without aux heads (torchvision, REFERENCE §2)."""
  conversion = torchvision_weights.convert_state_dict(
      random_state_dict(num_classes=1000), aux_heads=False
  )
  assert conversion.model_config["num_classes"] == 1000
  assert sum(v.size for v in jax.tree.leaves(conversion.variables["params"])) == 6_624_904


def test_aux_fc1_permutation_is_needed(state_dict):
  """Without the permutation fc1 would differ: guards against a vacuous aux comparison."""
  conversion = torchvision_weights.convert_state_dict(state_dict)
  kernel, torch_weight = (
      conversion.variables["params"]["aux_4a"]["fc"]["kernel"],
      state_dict["aux1.fc1.weight"],
  )
  assert not np.array_equal(kernel, torch_weight.T)
  # Row (h, w, c) of ours is column c*16 + h*4 + w of torch's.
  h, w, c = 1, 2, 5
  np.testing.assert_array_equal(kernel[(h * 4 + w) * 128 + c], torch_weight[:, c * 16 + h * 4 + w])


def test_transform_input_equals_unit_normalization():
  """torchvision's transform_input on ImageNet-normalised input is our 'unit' normalisation."""
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  x01 = np.random.default_rng(0).uniform(0, 1, (5, 3))
  imagenet = (x01 - mean) / std
  transformed = imagenet * (std / 0.5) + (mean - 0.5) / 0.5  # torchvision _transform_input
  np.testing.assert_allclose(transformed, x01 * 2 - 1, atol=1e-12)


def _problems(state_dict, **kwargs):
  with pytest.raises(torchvision_weights.TorchvisionWeightsError) as info:
    torchvision_weights.convert_state_dict(state_dict, **kwargs)
  return info.value, str(info.value)


def test_missing_tensor_is_named(state_dict):
  broken = dict(state_dict)
  del broken["inception4b.branch3.1.bn.running_var"]
  error, message = _problems(broken)
  assert "missing: inception4b.branch3.1.bn.running_var" in message
  assert len(error.problems) == 1


def test_unexpected_tensor_is_named(state_dict):
  broken = {**state_dict, "inception4b.branch5.conv.weight": np.zeros((3, 3), np.float32)}
  _, message = _problems(broken)
  assert "unexpected: inception4b.branch5.conv.weight" in message


def test_misshaped_tensor_is_named(state_dict):
  broken = {**state_dict, "inception3a.branch3.1.conv.weight": np.zeros((32, 16, 5, 5), np.float32)}
  _, message = _problems(broken)
  assert "mis-shaped: inception3a.branch3.1.conv.weight has shape (32, 16, 5, 5)" in message
  assert "expected (32, 16, 3, 3)" in message


def test_all_problems_are_reported_together(state_dict):
  broken = {
      **state_dict,
      "extra.weight": np.zeros(1, np.float32),
      "conv1.bn.weight": np.ones(65, np.float32),
  }
  del broken["aux2.fc1.bias"]
  error, message = _problems(broken)
  assert len(error.problems) == 3
  for name in ("extra.weight", "conv1.bn.weight", "aux2.fc1.bias"):
    assert name in message


def test_num_classes_that_disagrees_with_the_file_names_the_classifiers(state_dict):
  error, message = _problems(state_dict, num_classes=5)
  assert {p.split(" ")[1] for p in error.problems} == {
      "fc.weight",
      "fc.bias",
      "aux1.fc2.weight",
      "aux1.fc2.bias",
      "aux2.fc2.weight",
      "aux2.fc2.bias",
  }


def test_aux_heads_absent_from_file_are_initialised_fresh(state_dict):
  trunk_only = {k: v for k, v in state_dict.items() if not k.startswith("aux")}
  conversion = torchvision_weights.convert_state_dict(trunk_only, seed=0)
  assert conversion.fresh == ["aux_4a", "aux_4d"]
  params, stats = conversion.variables["params"], conversion.variables["batch_stats"]
  np.testing.assert_array_equal(
      params["conv1"]["conv"]["kernel"], state_dict["conv1.conv.weight"].transpose(2, 3, 1, 0)
  )
  # The model's own initialisers: BN at identity, torchvision's N(0, 0.01) weights.
  np.testing.assert_array_equal(params["aux_4a"]["conv"]["bn"]["scale"], 1.0)
  np.testing.assert_array_equal(stats["aux_4d"]["conv"]["bn"]["var"], 1.0)
  assert abs(params["aux_4d"]["fc"]["kernel"].std() - 0.01) < 1e-3
  again = torchvision_weights.convert_state_dict(trunk_only, seed=0)
  np.testing.assert_array_equal(
      again.variables["params"]["aux_4a"]["fc"]["kernel"], params["aux_4a"]["fc"]["kernel"]
  )


def test_aux_heads_false_skips_the_files_aux_tensors(state_dict):
  conversion = torchvision_weights.convert_state_dict(state_dict, aux_heads=False)
  assert "aux_4a" not in conversion.variables["params"]
  assert conversion.model_config["aux_heads"] is False
  assert "aux1.fc1.weight" in conversion.ignored


def test_missing_torch_gives_install_hint(monkeypatch):
  from inception import import_weights

  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
  with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
    import_weights.read_torch_state_dict("googlenet.pth")


def test_cli_round_trip(torch, tmp_path, state_dict, forward, ours, reference):
  """torch.save -> CLI -> orbax export -> load_model_variables -> the same logits."""
  from runtime.artifacts import load_model_variables

  src, out = tmp_path / "googlenet.pth", tmp_path / "export"
  torch.save(
      {k: torch.from_numpy(v) if v.ndim else torch.tensor(int(v)) for k, v in state_dict.items()},
      src,
  )
  result = run_import_cli(
      "--from=torchvision",
      f"--src={src}",
      f"--out={out}",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "convert" in result.stderr and "total" in result.stderr  # timing is logged

  variables, model_config = load_model_variables(str(out))
  model = create_model_from_config(model_config)
  assert model == create_model("torchvision", num_classes=NUM_CLASSES, aux_heads=True)
  logits, _, _ = forward(variables, jnp.asarray(images_nchw().transpose(0, 2, 3, 1)))
  np.testing.assert_array_equal(logits, ours[1][0])
  assert_logits_close(logits, reference[0])
