"""MultiBox through the project's systems: records and their source, the task in the training
system, cached inference, the union with selective search, and the compared proposal sets."""

import json

import numpy as np
import pytest
import tensorflow as tf

from configs import rcnn_synthetic
from detection import datasets, multibox, multibox_proposals, multibox_records, proposal_sets
from input_pipeline import config as data_config_lib
from input_pipeline import sources
from tests.png_checks import assert_picture

MATCH = multibox_records.MatchSettings()


def synthetic_split(num_images=6):
  section = rcnn_synthetic.get_config().detection
  section.synthetic.num_train = num_images
  section.synthetic.image_size = 64
  section.synthetic.min_size, section.synthetic.max_size = 14.0, 30.0
  return datasets.load_split(section, "train", -1)


def multibox_data_config(directory, **overrides):
  config = data_config_lib.default_data_config()
  config.source = f"multibox:{directory}"
  config.image_size = 32
  config.crop_area_range, config.crop_aspect_range = (1.0, 1.0), (1.0, 1.0)
  config.flip, config.eval_resize_ratio = False, 1.0
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  directory = tmp_path_factory.mktemp("multibox_records")
  split = synthetic_split()
  boxes = [multibox.normalise(a.boxes, a.height, a.width) for a in split.annotations]
  priors = multibox.kmeans_priors(np.concatenate(boxes), 4)
  stats = {
      "train": multibox_records.write_split(split, priors, str(directory / "train.tfrecord"), MATCH)
  }
  multibox_records.write_manifest(str(directory), priors, MATCH, stats)
  return directory, split, priors


def assert_targets_point_at_boxes(example, priors):
  """Every matched prior plus its target offset is one of the example's ground-truth boxes."""
  boxes = example["boxes"][: example["num_boxes"]]
  matched = np.flatnonzero(example["matched"])
  assert len(matched) == example["num_boxes"]  # bipartite: one prior per box (K >= boxes)
  for prior in matched:
    target = priors[prior] + example["target_offsets"][prior]
    assert np.abs(boxes - target).max(axis=1).min() < 1e-5


def test_source_serves_whole_images_with_targets_that_follow_the_mirror(records):
  directory, split, priors = records
  source = sources.get_source(multibox_data_config(directory))
  assert source.num_examples("train") == len(split) and source.num_classes == 1
  shard = source.shard("train", 0, 1)
  plain = list(shard.ordered().as_numpy_iterator())
  assert len(plain) == len(split)
  for example, annotation in zip(plain, split.annotations, strict=True):
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.uint8
    assert example["boxes"].shape == (source.manifest["max_boxes"], 4)
    assert example["num_boxes"] == len(annotation.boxes)
    np.testing.assert_allclose(
        example["boxes"][: example["num_boxes"]],
        multibox.normalise(annotation.boxes, annotation.height, annotation.width),
        atol=1e-6,
    )
    assert_targets_point_at_boxes(example, priors)
  # Mirrored: the image flips, and so do the boxes and the targets, consistently.
  parsed = next(iter(tf.data.TFRecordDataset(str(directory / "train.tfrecord")).map(source._parse)))
  mirrored = {k: v.numpy() for k, v in source._choose(parsed, tf.constant(True)).items()}
  np.testing.assert_array_equal(mirrored["image"], plain[0]["image"][:, ::-1])
  np.testing.assert_allclose(
      mirrored["boxes"][: mirrored["num_boxes"]],
      multibox_records.mirror(plain[0]["boxes"][: plain[0]["num_boxes"]]),
      atol=1e-6,
  )
  assert_targets_point_at_boxes(mirrored, priors)
  # Training epochs draw the mirror per example; every draw keeps the targets consistent.
  epoch = list(shard.shuffled(tf.constant([3, 4], tf.int64)).as_numpy_iterator())
  for example in epoch:
    assert_targets_point_at_boxes(example, priors)


def test_source_names_the_pipeline_geometry_it_cannot_work_with(records):
  directory, _, _ = records
  with pytest.raises(
      ValueError, match=r"crop_area_range.*--config.data.crop_area_range=\(1.0, 1.0\)"
  ):
    sources.get_source(multibox_data_config(directory, crop_area_range=(0.08, 1.0)))
  with pytest.raises(ValueError, match="data.flip"):
    sources.get_source(multibox_data_config(directory, flip=True))
  with pytest.raises(FileNotFoundError, match="eval.detect"):
    sources.get_source(multibox_data_config(directory / "missing"))


def test_union_keeps_selective_search_and_drops_multibox_near_duplicates():
  selective = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32)
  boxes = np.array(
      [[0, 0, 10, 10.2], [50, 50, 60, 60], [50.1, 50, 60, 60], [0, 0, 30, 30]], np.float32
  )
  union = multibox_proposals.union(selective, boxes, dedup_iou=0.9)
  np.testing.assert_array_equal(union[:2], selective)
  # The first is a duplicate of a selective-search box, the third of the second MultiBox box.
  np.testing.assert_array_equal(union[2:], boxes[[1, 3]])
  assert len(multibox_proposals.union(selective, boxes, dedup_iou=1.0)) == 6
  assert len(multibox_proposals.union(np.zeros((0, 4)), boxes[:1], dedup_iou=0.9)) == 1


def test_a_task_refuses_evaluators_that_cannot_read_its_output():
  from train import config as train_config
  from train import tasks

  config = train_config.default_config()
  config.task = "multibox"
  with pytest.raises(ValueError, match=r"\['top_k'\] cannot evaluate config.task='multibox'"):
    tasks.check_task(config)
  config.evaluators = ("multibox_recall",)
  with pytest.raises(ValueError, match=r"config.data.source='digits' has no targets"):
    tasks.check_task(config)
  config.data.source = "multibox:/tmp/records"
  with pytest.raises(ValueError, match=r"config.model.name='googlenet' cannot be trained"):
    tasks.check_task(config)
  config.model.name = "multibox"
  tasks.check_task(config)  # a consistent MultiBox config passes
  config.task = "segmentation"
  with pytest.raises(ValueError, match="config.task='segmentation': unknown"):
    tasks.check_task(config)


def multibox_config(cache_dir, **multibox_settings):
  from tests.test_detection_end_to_end import tiny_config

  config = tiny_config(cache_dir)
  config.detection.multibox.update(dict(batch_size=16, top_n=20, **multibox_settings))
  return config


def test_union_run_trains_multibox_and_reports_every_proposal_set(tmp_path):
  from detection import run
  from runtime import artifacts

  # One shape per image, so 160 images of 64 px teach a width-1/8 trunk where things are; the
  # region classifier stays tiny (3 steps): the plumbing is tested, not its accuracy.
  config = multibox_config(tmp_path / "cache", num_priors=8, image_size=64, num_epochs=15.0)
  config.detection.synthetic.update(dict(num_train=160, num_test=60, max_objects=1))
  config.detection.proposals.method = "union"
  config.detection.compare_proposal_sets = True
  workdir = tmp_path / "work"
  summary = run.run(config, str(workdir))

  # MultiBox was trained by the training system: its workdir holds checkpoints and a summary
  # whose recall (its 8 boxes after NMS, 60 test images) beats that of its 8 priors.
  with open(workdir / "multibox" / "model" / "summary.json") as f:
    trained = json.load(f)
  assert trained["eval_recall"] > trained["eval_prior_recall"] > 0.0, trained
  assert (workdir / "multibox" / "model" / "checkpoints").is_dir()
  from train import curves

  assert curves._panels_for(curves.read_scalars(str(workdir / "multibox/model/tensorboard")))[3][
      0
  ].startswith("Evaluation box recall")
  assert_picture(workdir / "multibox/model/curves.png", curves.WIDTH_PX, curves.HEIGHT_PX)

  names = [s["name"] for s in summary["proposal_sets"]]
  assert names == [
      "selective search x1",
      "selective search x2",
      "MultiBox top 8",
      "union x2 + MultiBox",
  ]
  by_name = {s["name"]: s for s in summary["proposal_sets"]}
  union, selective = by_name["union x2 + MultiBox"], by_name["selective search x2"]
  assert union["proposals_per_image"] > selective["proposals_per_image"]
  assert union["recall_iou50"] >= selective["recall_iou50"]
  assert summary["proposal_method"] == "union"
  assert summary["proposals_per_image"] == union["proposals_per_image"]
  for entry in summary["proposal_sets"]:
    assert 0.0 <= entry["mAP_voc07"] <= 1.0 and 0.0 <= entry["recall_iou50"] <= 1.0
  report = (workdir / "detection" / "report.md").read_text()
  assert "## Proposal sets (test split)" in report and "| union x2 + MultiBox |" in report
  # MultiBox's own confidences are detections only for a one-class set; the shapes have three.
  assert "MultiBox boxes by their own confidence" not in report
  assert "multibox_own_confidence" not in summary
  assert summary["paper_direction"].startswith("The paper's direction (section 8) ")
  assert summary["paper_direction"] in report
  assert_picture(
      workdir / "detection" / proposal_sets.RECALL_FILE_NAME,
      proposal_sets.WIDTH_PX,
      proposal_sets.HEIGHT_PX,
  )

  # Inference is cached, keyed by the model: the file is read back, a changed model misses it.
  cache_dir = str(tmp_path / "cache")
  test_split = run.load_data(config, with_train=False).splits["test"]
  infer = lambda: multibox_proposals.infer(config, str(workdir), {"test": test_split}, cache_dir)[
      "test"
  ]
  variables, _ = artifacts.load_model_variables(str(workdir / "multibox" / "model"), use_ema=True)
  priors = multibox_records.read_priors(multibox_proposals.record_dir(str(workdir)))
  settings = config.detection.multibox
  key = multibox_proposals.model_key(variables, priors, settings, "unit")
  (cached,) = (tmp_path / "cache").glob(f"multibox_{key}/test_*.npz")
  from_cache = infer()
  cached.unlink()
  computed = infer()
  assert cached.exists() and all(len(b) <= 8 for b in computed.boxes)
  for a, b in zip(
      from_cache.boxes + from_cache.scores, computed.boxes + computed.scores, strict=True
  ):
    np.testing.assert_array_equal(a, b)
  assert multibox_proposals.model_key(plus_one(variables), priors, settings, "unit") != key


def plus_one(variables):
  import jax

  leaves, tree = jax.tree.flatten(variables)
  leaves[0] = leaves[0] + 1.0
  return jax.tree.unflatten(tree, leaves)


def test_the_papers_direction_is_judged_on_all_three_conditions():
  from types import SimpleNamespace

  def measure(per_image, recall, map_voc07):
    return proposal_sets.SetMeasure("", per_image, recall, SimpleNamespace(map_voc07=map_voc07))

  scale_1, scale_2 = measure(1000, 0.95, 0.20), measure(500, 0.90, 0.22)
  assert " replays here" in proposal_sets.paper_direction(
      scale_1, scale_2, measure(600, 0.95, 0.23)
  )
  for union in (measure(1100, 0.96, 0.23), measure(600, 0.94, 0.23), measure(600, 0.95, 0.22)):
    assert "does NOT replay" in proposal_sets.paper_direction(scale_1, scale_2, union)


def test_comparing_proposal_sets_after_a_multibox_only_run_computes_selective_search(
    tmp_path, monkeypatch
):
  from detection import metrics, run

  # Method 'multibox' leaves no selective-search boxes behind; the comparison makes its own.
  config = multibox_config(tmp_path / "cache", num_priors=4)
  config.detection.proposals.method = "multibox"
  config.detection.compare_proposal_sets = True
  split = synthetic_split(3)
  multibox_boxes = [a.boxes[:1] for a in split.annotations]
  built = proposal_sets.ProposalSets(
      None,
      {"test": multibox_proposals.Proposals(multibox_boxes, [np.ones(1)] * 3)},
      {"test": multibox_boxes},
  )
  data = run.DetectionData({"test": split}, split.class_names)
  monkeypatch.setattr(run, "detect", lambda *args: metrics.Detections.empty())
  measures, _ = run._compare_proposal_sets(
      config,
      data,
      built,
      [],
      metrics.Detections.empty(),
      str(tmp_path / "cache"),
      str(tmp_path / "out"),
  )
  by_name = {m.name: m for m in measures}
  assert list(by_name) == [
      "selective search x1",
      "selective search x2",
      "MultiBox top 4",
      "union x2 + MultiBox",
  ]
  assert by_name["selective search x2"].proposals_per_image > 1
  union = by_name["union x2 + MultiBox"]
  assert union.proposals_per_image >= by_name["selective search x2"].proposals_per_image
