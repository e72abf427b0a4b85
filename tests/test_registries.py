"""The registries a config chooses from by name: data sources, models, evaluators."""

import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import digits
from inception import GoogLeNetOutput, create_model_from_config, models
import input_pipeline
from input_pipeline import sources
from runtime.mesh import create_data_mesh
from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT
from train import evaluators


class _Constant(sources.Source):
  """Four 'images' of one grey level each, labelled 0..3."""

  def __init__(self, level: str):
    self.level = int(level)

  @property
  def num_classes(self):
    return 4

  def num_examples(self, split):
    return 4

  def shard(self, split, process_index, process_count):
    import tensorflow as tf

    images = np.full((4, 8, 8, 3), self.level, np.uint8)
    ordered = lambda: tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": np.arange(4, dtype=np.int32)}
    )
    return sources.Shard(4, ordered, sources.buffer_shuffled(ordered, 4))


def test_a_registered_source_is_built_from_the_config_string():
  sources.register_source("constant", lambda argument, data_config: _Constant(argument))
  config = digits.get_config().data
  config.source = "constant:7"
  assert input_pipeline.num_classes(config) == 4
  assert input_pipeline.num_examples(config, "test") == 4
  with pytest.raises(ValueError, match="already registered"):
    sources.register_source("constant", lambda argument, data_config: _Constant(argument))
  config.source = "constant"  # this kind needs an argument
  with pytest.raises(ValueError, match=r"expected one of .*'constant:<argument>'.*'digits'"):
    input_pipeline.num_classes(config)


def test_every_built_in_source_resolves_in_a_fresh_process():
  # 'regions' lives in the detection package; main.py must resolve it without importing it.
  script = (
      "from input_pipeline import sources\n"
      "for kind in ('digits', 'tfds', 'folder', 'regions'):\n"
      "    print(kind, sources.SOURCES.get(kind).__module__)\n"
  )
  done = subprocess.run(
      [sys.executable, "-c", script],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert (
      "regions detection.regions" in done.stdout and "digits input_pipeline.digits" in done.stdout
  )


class _Linear(nn.Module):
  num_classes: int = 10

  @nn.compact
  def __call__(self, images, *, train=False):
    features = images.reshape(images.shape[0], -1)
    return GoogLeNetOutput(nn.Dense(self.num_classes)(features), (), features)


def _create_linear(num_classes: int = 10, **unused):
  return _Linear(num_classes)


def test_a_registered_model_is_built_by_name():
  models.register_model("linear_for_tests", _create_linear)
  assert isinstance(
      create_model_from_config({"name": "linear_for_tests", "num_classes": 3}), _Linear
  )
  # model.json files written before the registry carry no name: they are GoogLeNets.
  assert type(create_model_from_config({"variant": "bn", "num_classes": 3})).__name__ == "GoogLeNet"
  with pytest.raises(ValueError, match="config.model.name='nope'.*googlenet"):
    create_model_from_config({"name": "nope"})


def test_per_class_evaluator_matches_numpy_and_runs_beside_top_k():
  config = digits.get_config()
  config.data.image_size = 8
  config.eval_batch_size = 120
  model = _Linear(10)
  variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))
  evaluate = evaluators.build_evaluators(("top_k", "per_class"), model, config, create_data_mesh())
  results = evaluate(variables)

  apply = jax.jit(lambda v, x: model.apply(v, x).logits)
  labels, predictions = [], []
  for batch in input_pipeline.create_eval_dataset(config.data, 120).as_numpy_iterator():
    keep = batch["mask"]
    labels.append(batch["label"][keep])
    predictions.append(np.argmax(apply(variables, batch["image"]), -1)[keep])
  labels, predictions = np.concatenate(labels), np.concatenate(predictions)
  per_class = [np.mean(predictions[labels == c] == c) for c in range(10)]
  assert results["count"] == len(labels) == 360
  assert results["top1"] == pytest.approx(np.mean(predictions == labels), abs=1e-6)
  assert results["mean_class_top1"] == pytest.approx(np.mean(per_class), abs=1e-6)
  assert results["min_class_top1"] == pytest.approx(np.min(per_class), abs=1e-6)
  # What predicting the most frequent class alone would score: the floor to beat.
  assert results["majority_class_rate"] == pytest.approx(np.bincount(labels).max() / 360)
  assert "top5" in results


def test_top5_is_left_out_where_it_cannot_miss():
  from train.step import make_eval_step

  batch = {
      "image": np.zeros((4, 8, 8, 3), np.float32),
      "label": np.array([0, 1, 2, 2]),
      "mask": np.array([True, True, True, False]),
  }
  model = _Linear(3)
  variables = model.init(jax.random.key(0), batch["image"])
  sums = make_eval_step(model)(variables, batch)
  assert "top5" not in sums
  np.testing.assert_array_equal(sums["label_counts"], [1, 1, 1])  # the padded row is not counted
  assert "top5" in make_eval_step(_Linear(6))(
      _Linear(6).init(jax.random.key(0), batch["image"]), batch
  )


def test_unknown_evaluator_is_named_with_the_choices():
  with pytest.raises(ValueError, match=r"config.evaluators='multi_crop'.*per_class.*top_k"):
    evaluators.check_evaluators(("top_k", "multi_crop"))
  with pytest.raises(ValueError, match="empty"):
    evaluators.check_evaluators(())
  config = digits.get_config()
  config.evaluators = ("top_1",)
  from train.config import check_config

  with pytest.raises(ValueError, match="top_1"):
    check_config(config)
