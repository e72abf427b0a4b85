"""Region scoring feeds each ensemble member the input convention its directory records."""

import jax
import numpy as np

from detection import datasets, scoring
from inception import create_model_from_config
from runtime import artifacts
from runtime import mesh as mesh_lib
from tests.test_detection_end_to_end import tiny_config

CROP = 16


def saved_classifier(directory, normalization):
  """A narrow paper-variant classifier (LRN: not affine in its input) saved with input.json."""
  config = tiny_config(directory / "unused_cache")
  model_config = {**config.model.to_dict(), "variant": "paper", "num_classes": 4}
  model = create_model_from_config(model_config)
  variables = jax.jit(lambda key: model.init(key, np.zeros((1, CROP, CROP, 3), np.float32)))(
      jax.random.key(0)
  )
  artifacts.save_model_variables(str(directory), variables, model_config)
  artifacts.write_input_convention(str(directory), normalization)
  return str(directory)


def test_a_member_trained_on_caffe_input_scores_as_in_a_caffe_run(tmp_path, absl_info, caplog):
  config = tiny_config(tmp_path / "cache").detection
  split = datasets.load_split(config, "test")
  # Proposals inside the images and no context padding: no grey fill, whose colour is the
  # run's mean and so the one thing a conversion cannot carry over.
  proposals = [np.array([[2, 3, 40, 30], [10, 10, 60, 50], [0, 0, 63, 63]], np.float32)] * len(
      split
  )
  (member,) = scoring.load_classifiers([saved_classifier(tmp_path / "caffe", "caffe")], True)
  assert member.normalization == "caffe"
  mesh = mesh_lib.create_data_mesh()

  def score(classifier, normalization):
    return scoring.score_proposals(split, proposals, [classifier], CROP, 0, normalization, 64, mesh)

  in_caffe_run = score(member, "caffe")
  # The silent part before the first progress line (restore, compilation) is announced.
  assert f"Restoring the region classifier in {tmp_path / 'caffe'}." in caplog.text
  assert (
      f"Scoring {3 * len(split)} regions of {len(split)} images in 1 batches of 64 per process "
      "with 1 classifier(s); the first batch includes XLA compilation." in caplog.text
  )
  converted = score(member, "imagenet")
  for a, b in zip(converted, in_caffe_run, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # Fed the imagenet regions as they are, the same weights score differently.
  unconverted = score(
      scoring.Classifier(member.directory, member.model_config, member.variables), "imagenet"
  )
  assert max(np.abs(a - b).max() for a, b in zip(unconverted, in_caffe_run)) > 1e-3
