"""Each model of an evaluation sees its own input convention, converted on the device."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from eval import classification, renormalize
from inception import create_model
from input_pipeline import photometric
from runtime import artifacts
from tests.test_eval_scoring import folder_data_config, write_digit_folder

CONVENTIONS = ("imagenet", "caffe", "unit")


@pytest.mark.parametrize("source,target", list(itertools.permutations(CONVENTIONS, 2)))
def test_conversion_equals_normalising_in_the_target_convention(source, target):
  rgb01 = np.random.default_rng(0).uniform(0, 1, (4, 5, 5, 3)).astype(np.float32)
  converted = renormalize.convert(
      jnp.asarray(photometric.normalize(rgb01, source).numpy()), source, target
  )
  expected = photometric.normalize(rgb01, target).numpy()
  np.testing.assert_allclose(converted, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_affine_form_is_the_pipelines_normalize():
  rgb01 = np.random.default_rng(1).uniform(0, 1, (7, 3)).astype(np.float32)
  for method in CONVENTIONS:
    order, scale, offset = photometric.normalization_affine(method)
    np.testing.assert_allclose(
        rgb01[:, order] * scale + offset,
        photometric.normalize(tf.constant(rgb01), method).numpy(),
        rtol=1e-5,
        atol=1e-4,
    )


def test_a_caffe_model_in_a_unit_run_scores_as_in_a_caffe_run(tmp_path):
  """The whole evaluation: same predictions whether the views are cut in the model's own
  convention or in another one and converted."""
  root = tmp_path / "digits"
  write_digit_folder(root, per_class=1)
  model = create_model("paper", num_classes=10, width=0.125)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  export = tmp_path / "export"
  artifacts.write_input_convention(str(export), "caffe")

  def run(run_normalization, model_normalization):
    data = folder_data_config(root)
    data.normalization = run_normalization
    entry = classification.ModelToEvaluate(str(export), model, variables, {}, model_normalization)
    return classification.evaluate([entry], data, split="train", crops=[1, 10])

  native = run("caffe", None)  # the run's convention is the model's: nothing converted
  converted = run("unit", artifacts.read_input_convention(str(export))["normalization"])
  assert converted["models"][0]["normalization"] == "caffe"
  for a, b in zip(native["cells"], converted["cells"]):
    assert a["top1_accuracy"] == b["top1_accuracy"] and a["top5_accuracy"] == b["top5_accuracy"]

  def scores(results):
    by_crops = results["predictions"]["by_crops"]
    return {crops: np.array(p["top5_scores"]) for crops, p in by_crops.items()}

  def top1(results):
    by_crops = results["predictions"]["by_crops"]
    return {crops: [c[0] for c in p["top5_classes"]] for crops, p in by_crops.items()}

  assert top1(native) == top1(converted)
  for crops, expected in scores(native).items():
    np.testing.assert_allclose(scores(converted)[crops], expected, atol=1e-5)
  # Fed the unit views unconverted, the Caffe model would score differently.
  unconverted = scores(run("unit", None))
  assert any(np.abs(unconverted[c] - s).max() > 1e-3 for c, s in scores(native).items())
