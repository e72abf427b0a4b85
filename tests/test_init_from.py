"""Starting a run from another model's variables (config.init_from): the whole model, some
heads re-initialised, or a classification GoogLeNet as the trunk of MultiBox."""

import logging

import jax
import numpy as np
import pytest

from configs import rcnn_synthetic
from detection import multibox_proposals
from inception import create_model, create_model_from_config
from train import config as train_config
from train.init_from import merge_variables


def shapes_to_arrays(tree, seed):
  """Distinct random values for every leaf of an eval_shape tree (so a copy is recognisable)."""
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(
      treedef, [rng.standard_normal(leaf.shape).astype(leaf.dtype) for leaf in leaves]
  )


def variables_of(model, size, seed):
  images = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  return shapes_to_arrays(shapes, seed)


def small_tree(seed, classes=3):
  rng = np.random.default_rng(seed)
  return {
      "conv1": {"kernel": rng.standard_normal((3, 3, 3, 4)).astype(np.float32)},
      "classifier": {"kernel": rng.standard_normal((4, classes)).astype(np.float32)},
  }


def test_whole_model_loaded_but_the_heads_named_to_reinitialise():
  fresh, loaded = small_tree(0), small_tree(1, classes=7)
  merged = merge_variables(fresh, loaded, ("classifier",), "params")
  np.testing.assert_array_equal(merged["conv1"]["kernel"], loaded["conv1"]["kernel"])
  np.testing.assert_array_equal(merged["classifier"]["kernel"], fresh["classifier"]["kernel"])


def test_a_tree_that_does_not_fit_names_each_tensor_and_the_flag():
  fresh, loaded = small_tree(0), small_tree(1, classes=7)
  del loaded["conv1"]
  with pytest.raises(ValueError) as error:
    merge_variables(fresh, loaded, (), "params")
  message = str(error.value)
  assert "missing params/conv1/kernel (3, 3, 3, 4)" in message
  assert "params/classifier/kernel: checkpoint (4, 7) vs model (4, 3)" in message
  assert "--config.init_from_reinit" in message


def test_into_fills_one_submodule_and_leaves_the_rest_fresh(caplog, absl_info):
  loaded = small_tree(1)
  loaded["aux"] = {"kernel": np.ones((2, 2), np.float32)}
  fresh = {"trunk": small_tree(0), "box_offsets": {"kernel": np.zeros((4, 8), np.float32)}}
  with caplog.at_level(logging.INFO):
    merged = merge_variables(fresh, loaded, ("classifier",), "params", into="trunk")
  np.testing.assert_array_equal(merged["trunk"]["conv1"]["kernel"], loaded["conv1"]["kernel"])
  np.testing.assert_array_equal(
      merged["trunk"]["classifier"]["kernel"], fresh["trunk"]["classifier"]["kernel"]
  )
  assert merged["box_offsets"]["kernel"] is fresh["box_offsets"]["kernel"]
  # The loaded model's aux head has no place in the trunk: said, not an error.
  assert "1 params tensors of the checkpoint are not used by this model" in caplog.text
  with pytest.raises(ValueError, match=r"init_from_into='body'.*\['box_offsets', 'trunk'\]"):
    merge_variables(fresh, loaded, (), "params", into="body")


@pytest.mark.parametrize("variant", ["bn", "paper"])
def test_an_imagenet_googlenet_fills_the_multibox_trunk(variant):
  """Full size (shapes only): every trunk tensor but its unused 1-class head comes from a
  1000-class GoogLeNet of the same variant, BatchNorm statistics included."""
  config = train_config.default_config()
  config.model.name, config.model.variant = "multibox", variant
  config.model.num_priors, config.model.num_classes = 200, 1
  multibox = create_model_from_config(config.model)
  fresh = variables_of(multibox, 224, seed=0)
  loaded = variables_of(create_model(variant, num_classes=1000), 224, seed=1)
  for collection in fresh:
    merged = merge_variables(
        fresh[collection], loaded[collection], ("classifier",), collection, into="trunk"
    )
    flat_merged = dict(jax.tree_util.tree_leaves_with_path(merged))
    flat_fresh = dict(jax.tree_util.tree_leaves_with_path(fresh[collection]))
    loaded_by_name = {
        jax.tree_util.keystr(p): v
        for p, v in jax.tree_util.tree_leaves_with_path(loaded[collection])
    }
    copied = 0
    for path, value in flat_merged.items():
      keys = [k.key for k in path]
      if keys[0] == "trunk" and keys[1] != "classifier":
        np.testing.assert_array_equal(value, loaded_by_name[jax.tree_util.keystr(path[1:])])
        copied += 1
      else:  # the box layers and the trunk's own head start fresh
        np.testing.assert_array_equal(value, flat_fresh[path])
    assert copied > 50 if collection == "params" else copied > 0


def test_detection_passes_its_multibox_init_from_to_the_trunk():
  config = rcnn_synthetic.get_config()
  config.detection.multibox.init_from = "/exports/googlenet_bn"
  trained = multibox_proposals.training_config(config, "/records")
  assert trained.init_from == "/exports/googlenet_bn"
  assert trained.init_from_into == "trunk" and tuple(trained.init_from_reinit) == ("classifier",)
  # The region classifier's own init_from is not MultiBox's.
  config.detection.multibox.init_from = ""
  config.init_from = "/exports/region_classifier"
  assert multibox_proposals.training_config(config, "/records").init_from == ""


def test_a_run_starts_from_another_runs_variables(tmp_path, monkeypatch):
  """Through the training system: the state the loop trains from holds the source run's
  variables (its classifier re-initialised), with fresh optimizer slots and EMA copies."""
  from runtime import artifacts
  from tests.test_train_loop import tiny_config
  from train import loop, train_and_evaluate

  source = str(tmp_path / "source")
  train_and_evaluate(tiny_config(2), source)
  started_from = []

  def recorded(*args):
    state = loop_load(*args)
    started_from.append(jax.device_get(state))
    return state

  loop_load = loop.load_initial_variables
  monkeypatch.setattr(loop, "load_initial_variables", recorded)
  config = tiny_config(2)  # the same programs as the source run: no new compilation
  config.init_from, config.init_from_reinit = source, ("classifier",)
  train_and_evaluate(config, str(tmp_path / "tuned"))

  (state,) = started_from
  loaded, _ = artifacts.load_model_variables(source)
  assert int(state.step) == 0
  for collection in ("params", "batch_stats"):
    for name, value in loaded[collection].items():
      started = getattr(state, collection)[name]
      if name == "classifier":  # re-initialised: not the source's trained head
        assert not np.array_equal(started["kernel"], value["kernel"])
      else:
        jax.tree.map(np.testing.assert_array_equal, started, value)
  jax.tree.map(np.testing.assert_array_equal, state.ema_params, state.params)
  assert not any(np.any(m) for m in jax.tree.leaves(state.opt_state) if np.ndim(m))
