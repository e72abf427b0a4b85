"""Importing BVLC Caffe bvlc_googlenet weights: our `paper` model must compute what Caffe's does.

A caffemodel with random, signal-preserving weights (He-scaled kernels, small random biases) is
written through our schema (inception/caffe_format.py); OpenCV 4 parses it with its own copy of
caffe.proto and runs its own forward pass (tests/caffe_reference.py), which is compared with our
`paper` variant after `caffe_weights.convert_blobs`, main and both aux heads, on two images in
the `caffe` normalisation's range (BGR, 0..255 minus the mean). The schema, the conversion and
the model are all under test at once: a wrong field number, a wrong axis order or a wrong layer
would each fail the comparison (the mutation tests below show that it can fail).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception import caffe_format, caffe_weights, create_model, create_model_from_config, paper
from inception.weight_layout import WeightsError
from tests import caffe_reference
from tests.weight_checks import (
    assert_matches,
    matches,
    probe_images,
    relative_difference,
    run_import_cli,
)

NUM_CLASSES = 1000
SIZE = 224


def random_blobs(num_classes=NUM_CLASSES, aux=True, seed=0):
  """bvlc_googlenet's weight blobs (layer -> [weights, bias]) with random values."""
  rng = np.random.default_rng(seed)
  blobs = {}

  def layer(name, weight_shape, fan_in):
    weights = rng.normal(0, np.sqrt(2 / fan_in), weight_shape).astype(np.float32)
    blobs[name] = [weights, rng.normal(0, 0.1, weight_shape[0]).astype(np.float32)]

  def conv(name, cin, cout, k):
    layer(name, (cout, cin, k, k), cin * k * k)

  stem = paper.STEM_CHANNELS
  conv("conv1/7x7_s2", 3, stem["conv1"], 7)
  conv("conv2/3x3_reduce", stem["conv1"], stem["conv2_reduce"], 1)
  conv("conv2/3x3", stem["conv2_reduce"], stem["conv2"], 3)
  cin = stem["conv2"]
  for tag, c in paper.INCEPTION_CHANNELS.items():
    name = f"inception_{tag}"
    conv(f"{name}/1x1", cin, c.conv1x1, 1)
    conv(f"{name}/3x3_reduce", cin, c.reduce3x3, 1)
    conv(f"{name}/3x3", c.reduce3x3, c.conv3x3, 3)
    conv(f"{name}/5x5_reduce", cin, c.reduce5x5, 1)
    conv(f"{name}/5x5", c.reduce5x5, c.conv5x5, 5)
    conv(f"{name}/pool_proj", cin, c.pool_proj, 1)
    cin = c.out_channels
    loss = {"4a": "loss1", "4d": "loss2"}.get(tag)
    if aux and loss:
      conv(f"{loss}/conv", cin, paper.AUX_CONV_CHANNELS, 1)
      grid = paper.AUX_CONV_CHANNELS * 16
      layer(f"{loss}/fc", (paper.AUX_HIDDEN_UNITS, grid), grid)
      layer(f"{loss}/classifier", (num_classes, paper.AUX_HIDDEN_UNITS), paper.AUX_HIDDEN_UNITS)
  layer("loss3/classifier", (num_classes, cin), cin)
  return blobs


@pytest.fixture(scope="module")
def blobs():
  return random_blobs()


@pytest.fixture(scope="module")
def caffemodel(tmp_path_factory, blobs):
  path = tmp_path_factory.mktemp("caffe") / "bvlc_googlenet.caffemodel"
  caffe_format.write_caffemodel(str(path), blobs)
  return str(path)


@pytest.fixture(scope="module")
def images():
  # The `caffe` normalisation's range: 0..255 minus a mean of about 104..123.
  return probe_images(SIZE, -123.0, 151.0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, caffemodel, images):
  caffe_reference.require_opencv4()
  prototxt = caffe_reference.bvlc_googlenet_prototxt(
      NUM_CLASSES, aux_heads=True, batch=len(images), size=SIZE
  )
  tmp = tmp_path_factory.mktemp("opencv4")
  return caffe_reference.opencv4_forward(tmp, prototxt, caffemodel, images.transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def conversion(caffemodel):
  return caffe_weights.convert_blobs(caffe_format.read_caffemodel(caffemodel))


@pytest.fixture(scope="module")
def forward():
  """Main and aux logits, deterministic: dropout rates 0 so train=True only adds the aux heads."""
  model = create_model(
      "paper", num_classes=NUM_CLASSES, dropout_rate=0.0, aux_dropout_rate=0.0, aux_heads=True
  )

  @jax.jit
  def run(variables, images):
    out = model.apply(variables, images, train=True, rngs={"dropout": jax.random.key(0)})
    return out.logits, out.aux_logits

  return lambda variables, images: jax.tree.map(np.asarray, run(variables, jnp.asarray(images)))


@pytest.fixture(scope="module")
def ours(forward, conversion, images):
  return forward(conversion.variables, images)


def test_logits_and_aux_logits_match_opencv(reference, ours):
  logits, (aux1, aux2) = ours
  assert_matches(logits, reference["loss3/classifier"], "loss3/classifier")
  assert_matches(aux1, reference["loss1/classifier"], "loss1/classifier (aux_4a)")
  assert_matches(aux2, reference["loss2/classifier"], "loss2/classifier (aux_4d)")


def test_logits_depend_on_the_input(reference, ours):
  """Signal-preserving weights: the two images' logits differ well beyond the tolerance."""
  for logits in (ours[0], reference["loss3/classifier"]):
    assert relative_difference(logits[0:1], logits[1:2]) > 0.05


def test_a_transposed_or_mutated_kernel_fails_the_comparison(
    reference, forward, conversion, images
):
  """The comparison is sharp enough to see one wrongly converted kernel."""
  params = conversion.variables["params"]
  kernel = params["inception_4c"]["5x5"]["conv"]["kernel"]
  transposed = jax.tree.map(lambda x: x, conversion.variables)  # a copy to edit
  transposed["params"]["inception_4c"]["5x5"]["conv"]["kernel"] = kernel.transpose(1, 0, 2, 3)
  assert not matches(forward(transposed, images)[0], reference["loss3/classifier"])

  mutated = jax.tree.map(lambda x: x, conversion.variables)
  conv2 = params["conv2"]["conv"]["kernel"].copy()
  conv2[1, 1, 0, 0] += 1.0
  mutated["params"]["conv2"]["conv"]["kernel"] = conv2
  assert not matches(forward(mutated, images)[0], reference["loss3/classifier"])


def test_legacy_v1_file_converts_to_the_same_variables(tmp_path, blobs, conversion):
  """Pre-2015 caffemodels use V1 `layers` and 4-d blob dims ((1, 1, out, in) for fc weights)."""
  path = tmp_path / "v1.caffemodel"
  caffe_format.write_caffemodel(str(path), blobs, legacy_v1=True)
  read = caffe_format.read_caffemodel(str(path))
  assert read["loss3/classifier"][0].shape == (1, 1, NUM_CLASSES, 1024)
  legacy = caffe_weights.convert_blobs(read)
  jax.tree.map(np.testing.assert_array_equal, legacy.variables, conversion.variables)


def _problems(blobs, **kwargs):
  with pytest.raises(WeightsError) as info:
    caffe_weights.convert_blobs(blobs, **kwargs)
  return info.value.problems


def test_wrong_blobs_are_named(blobs):
  broken = {name: list(arrays) for name, arrays in blobs.items()}
  del broken["inception_4b/5x5"][1]
  broken["inception_3a/5x5"][0] = np.zeros((32, 16, 3, 3), np.float32)
  broken["inception_3a/7x7"] = [np.zeros(3, np.float32)]
  problems = _problems(broken)
  assert sorted(problems) == sorted(
      [
          "missing: inception_4b/5x5 bias (expected shape (64,))",
          "mis-shaped: inception_3a/5x5 weights has shape (32, 16, 3, 3), expected (32, 16, 5, 5)",
          "unexpected: inception_3a/7x7 weights (shape (3,))",
      ]
  )


def test_aux_heads_false_skips_and_absent_ones_are_fresh(blobs):
  skipped = caffe_weights.convert_blobs(blobs, aux_heads=False)
  assert "aux_4a" not in skipped.variables["params"]
  assert "loss1/fc weights" in skipped.ignored
  trunk_only = {name: b for name, b in blobs.items() if not name.startswith("loss1/")}
  trunk_only = {name: b for name, b in trunk_only.items() if not name.startswith("loss2/")}
  fresh = caffe_weights.convert_blobs(trunk_only, seed=0)
  assert fresh.fresh == ["aux_4a", "aux_4d"]
  # The paper variant's own initialiser: biases of 0.2 (docs/paper_notes.md).
  np.testing.assert_array_equal(fresh.variables["params"]["aux_4a"]["fc"]["bias"], np.float32(0.2))


def test_unreadable_files_name_the_fix(tmp_path):
  prototxt = tmp_path / "deploy.prototxt"
  prototxt.write_text(
      caffe_reference.bvlc_googlenet_prototxt(10, aux_heads=False, batch=1, size=224)
  )
  with pytest.raises(caffe_format.CaffeFormatError, match=r"not the (text \.prototxt|deploy)"):
    caffe_format.read_caffemodel(str(prototxt))
  with pytest.raises(caffe_format.CaffeFormatError, match="Cannot read"):
    caffe_format.read_caffemodel(str(tmp_path / "absent.caffemodel"))


def test_truncated_file_is_an_error_not_a_partial_model(tmp_path, caffemodel):
  data = open(caffemodel, "rb").read()
  truncated = tmp_path / "truncated.caffemodel"
  truncated.write_bytes(data[: len(data) // 2])
  with pytest.raises(caffe_format.CaffeFormatError):
    caffe_format.read_caffemodel(str(truncated))


def test_cli_round_trip(tmp_path, caffemodel, forward, ours, images):
  """.caffemodel -> CLI -> orbax export -> load_model_variables -> the same logits."""
  from runtime.artifacts import load_model_variables

  out = tmp_path / "export"
  result = run_import_cli(
      "--from=caffe",
      f"--src={caffemodel}",
      f"--out={out}",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "normalization=caffe" in result.stderr and "total" in result.stderr
  variables, model_config = load_model_variables(str(out))
  assert create_model_from_config(model_config) == create_model(
      "paper", num_classes=NUM_CLASSES, aux_heads=True
  )
  np.testing.assert_array_equal(forward(variables, images)[0], ours[0])
  # The export records its input convention, which evaluation feeds it (eval/renormalize.py).
  from eval import classification

  (entry,) = classification.load_models([str(out)], use_ema=False)
  assert entry.normalization == "caffe" and entry.model_config == model_config


def test_cli_names_a_wrong_file_without_a_traceback(tmp_path):
  bad = tmp_path / "bad.caffemodel"
  caffe_format.write_caffemodel(str(bad), {"conv1/7x7_s2": [np.zeros((64, 3, 7, 7))]})
  result = run_import_cli(
      "--from=caffe",
      f"--src={bad}",
      f"--out={tmp_path / 'out'}",
  )
  assert result.returncode == 1
  assert "missing: conv1/7x7_s2 bias" in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "out").exists()
