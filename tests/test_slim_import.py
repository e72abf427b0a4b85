"""Importing TF-slim inception_v1 checkpoints: our `slim` model must compute what TF-slim does.

TF-slim's own `inception_v1` (the `tf-slim` 1.1.0 package, TensorFlow's compat graph mode) is
built here with random, signal-preserving values in every variable (He-scaled kernels, random
BatchNorm statistics and offsets), saved as a TensorFlow checkpoint and run on two images in
[-1, 1] (slim's inception preprocessing); the checkpoint is then imported with
`slim_weights` and our `slim` variant must give the same logits, with the 1001-class head kept
and with the background class dropped. TF-slim's inception_v1 has no aux heads, so there is no
aux comparison; the import gives a model with aux heads fresh ones (tested on their own).
"""

import importlib
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception import create_model, create_model_from_config, slim_weights
from inception.weight_layout import WeightsError
from tests.weight_checks import (
    assert_matches,
    matches,
    probe_images,
    relative_difference,
    run_import_cli,
)

SIZE = 224
SLIM_HINT = (
    "the TF-slim comparison needs `pip install tf-slim==1.1.0 tf-keras==2.21.0` (.ci/run "
    "installs them)"
)


def import_slim_inception_v1():
  """tf_slim.nets.inception_v1, skipping without tf-slim (failing in CI, where it must run)."""
  try:
    importlib.import_module("tf_keras")
    try:
      importlib.import_module("tf_keras.legacy_tf_layers")
    except ImportError:  # TF 2.21 looks here; tf-keras 2.21 keeps the module under src/
      sys.modules["tf_keras.legacy_tf_layers"] = importlib.import_module(
          "tf_keras.src.legacy_tf_layers"
      )
    return importlib.import_module("tf_slim.nets.inception_v1")
  except ImportError as e:
    if os.environ.get("CI"):
      pytest.fail(f"CI must run the TF-slim equality test ({e}): {SLIM_HINT}")
    pytest.skip(f"{SLIM_HINT} ({e})")


def _random_value(name, shape, rng):
  if name.endswith("/weights"):  # He: keeps activations O(1) through ~22 conv layers
    return rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
  if name.endswith("/moving_variance"):
    return rng.uniform(0.5, 2.0, shape)
  return rng.normal(0, 0.2, shape)  # beta, moving_mean, biases


@pytest.fixture(scope="module")
def images():
  return probe_images(SIZE, -1.0, 1.0)


@pytest.fixture(scope="module")
def slim_run(tmp_path_factory, images):
  """(checkpoint prefix, TF-slim's logits on `images`, its variable count, trainable size)."""
  inception_v1 = import_slim_inception_v1()
  import tensorflow as tf
  import tf_slim

  prefix = str(tmp_path_factory.mktemp("slim") / "inception_v1.ckpt")
  rng = np.random.default_rng(0)
  with tf.Graph().as_default():
    inputs = tf.compat.v1.placeholder(tf.float32, [None, SIZE, SIZE, 3])
    with tf_slim.arg_scope(inception_v1.inception_v1_arg_scope()):
      logits, _ = inception_v1.inception_v1(inputs, num_classes=1001, is_training=False)
    variables = tf.compat.v1.global_variables()
    with tf.compat.v1.Session() as session:
      for variable in variables:
        value = _random_value(variable.op.name, variable.shape.as_list(), rng)
        variable.load(value.astype(np.float32), session)
      tf.compat.v1.train.Saver(variables).save(session, prefix, write_meta_graph=False)
      reference = session.run(logits, {inputs: images})
    trainable = sum(v.shape.num_elements() for v in tf.compat.v1.trainable_variables())
  return prefix, reference, len(variables), trainable


@pytest.fixture(scope="module")
def arrays(slim_run):
  return slim_weights.read_checkpoint(slim_run[0])


@pytest.fixture(scope="module")
def forward():
  cache = {}

  def run(model, variables, images):
    if model not in cache:
      cache[model] = jax.jit(lambda v, x: model.apply(v, x, train=False).logits)
    return np.asarray(cache[model](variables, jnp.asarray(images)))

  return run


@pytest.fixture(scope="module")
def kept(arrays):
  return slim_weights.convert_checkpoint(arrays, keep_background=True, aux_heads=False)


def test_checkpoint_is_tf_slims_whole_network(slim_run, arrays, kept):
  assert slim_run[2] == 230  # conv weights + BN beta/mean/var of 57 convs, logits w + b
  assert len(arrays) == 230 and len(kept.converted) == 230
  ours = sum(leaf.size for leaf in jax.tree.leaves(kept.variables["params"]))
  assert ours == slim_run[3] == 6_618_649


def test_logits_match_tf_slim_with_and_without_background(slim_run, arrays, kept, forward, images):
  reference = slim_run[1]
  model = create_model_from_config(kept.model_config)
  assert model.num_classes == 1001
  assert_matches(forward(model, kept.variables, images), reference, "1001 classes")

  dropped = slim_weights.convert_checkpoint(arrays, aux_heads=False)
  model = create_model_from_config(dropped.model_config)
  assert model.num_classes == 1000
  assert_matches(forward(model, dropped.variables, images), reference[:, 1:], "background dropped")


def test_logits_depend_on_the_input(slim_run):
  reference = slim_run[1]
  assert relative_difference(reference[0:1], reference[1:2]) > 0.05


def test_slims_padding_and_a_transposed_kernel_are_both_needed(slim_run, kept, forward, images):
  """Caffe/torchvision padding (conv1 3+3 instead of 'SAME' 2+3) or one transposed kernel fails."""
  reference = slim_run[1]
  caffe_padded = create_model("slim", num_classes=1001, aux_heads=False, padding="caffe")
  assert not matches(forward(caffe_padded, kept.variables, images), reference)

  model = create_model_from_config(kept.model_config)
  transposed = jax.tree.map(lambda x: x, kept.variables)
  kernel = kept.variables["params"]["conv2"]["conv"]["kernel"]
  transposed["params"]["conv2"]["conv"]["kernel"] = kernel.transpose(1, 0, 2, 3)
  assert not matches(forward(model, transposed, images), reference)


def test_fresh_aux_heads_by_default(arrays):
  conversion = slim_weights.convert_checkpoint(arrays, seed=0)
  assert conversion.fresh == ["aux_4a", "aux_4d"]
  assert "scale" not in conversion.variables["params"]["aux_4a"]["conv"]["bn"]  # slim's BN
  np.testing.assert_array_equal(
      conversion.variables["batch_stats"]["aux_4d"]["conv"]["bn"]["var"], 1
  )


def test_wrong_tensors_are_named(arrays):
  broken = dict(arrays)
  del broken["InceptionV1/Mixed_4e/Branch_1/Conv2d_0b_3x3/BatchNorm/moving_variance"]
  broken["InceptionV1/Conv2d_1a_7x7/BatchNorm/gamma"] = np.ones(64, np.float32)
  broken["global_step"] = np.int64(1000)  # training state is skipped, not an error
  with pytest.raises(WeightsError) as info:
    slim_weights.convert_checkpoint(broken, keep_background=True, aux_heads=False)
  assert sorted(info.value.problems) == [
      "missing: InceptionV1/Mixed_4e/Branch_1/Conv2d_0b_3x3/BatchNorm/moving_variance "
      "(expected shape (288,))",
      "unexpected: InceptionV1/Conv2d_1a_7x7/BatchNorm/gamma (shape (64,))",
  ]


def test_dropping_a_background_the_file_lacks_is_an_error(arrays):
  logits = "InceptionV1/Logits/Conv2d_0c_1x1"
  no_background = {
      **arrays,
      f"{logits}/weights": arrays[f"{logits}/weights"][..., 1:],
      f"{logits}/biases": arrays[f"{logits}/biases"][1:],
  }
  with pytest.raises(slim_weights.SlimCheckpointError, match="--keep_background=true"):
    slim_weights.convert_checkpoint(no_background)
  kept = slim_weights.convert_checkpoint(no_background, keep_background=True, aux_heads=False)
  assert kept.model_config["num_classes"] == 1000


def test_unreadable_checkpoint_names_the_fix(tmp_path):
  with pytest.raises(slim_weights.SlimCheckpointError, match="checkpoint prefix"):
    slim_weights.read_checkpoint(str(tmp_path / "absent.ckpt"))


def test_cli_round_trip(tmp_path, slim_run, forward, images):
  from runtime.artifacts import load_model_variables

  out = tmp_path / "export"
  result = run_import_cli(
      "--from=slim",
      f"--src={slim_run[0]}",
      f"--out={out}",
      "--aux_heads=false",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "normalization=unit" in result.stderr
  variables, model_config = load_model_variables(str(out))
  model = create_model_from_config(model_config)
  assert model == create_model("slim", num_classes=1000, aux_heads=False)
  assert_matches(forward(model, variables, images), slim_run[1][:, 1:], "CLI export")
