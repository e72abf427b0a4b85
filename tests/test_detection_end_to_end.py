"""A short R-CNN run on a few synthetic images: train via the training system, detect, evaluate."""

import json
import math
import os

import pytest

from configs import rcnn_synthetic
from detection import precision_recall_figure, run
from runtime import artifacts
from tests.png_checks import assert_picture

pytest.importorskip("cv2.ximgproc", reason="needs opencv-contrib-python-headless")


# A few synthetic images, a tiny classifier for 3 steps: flat `--config.` overrides, so that
# tests/test_multiprocess.py can run the same setting through `python -m eval.detect`.
TINY_OVERRIDES = {
    "model.width": 0.125,
    "model.aux_heads": False,  # smaller graph, faster compile
    "data.image_size": 16,
    "batch_size": 16,  # one image's 16 regions; divisible by the 8 simulated devices
    "eval_batch_size": 64,
    "num_train_steps": 3,
    "log_every_steps": 1,
    "checkpoint_every_steps": 100,
    "detection.synthetic.num_train": 4,
    "detection.synthetic.num_test": 3,
    "detection.synthetic.image_size": 64,
    "detection.synthetic.min_size": 14.0,
    "detection.synthetic.max_size": 30.0,
    "detection.regions.context_padding": 1,
    "detection.inference_batch_size": 64,
    "detection.num_visualized": 2,
}


def tiny_config(cache_dir):
  config = rcnn_synthetic.get_config()
  for key, value in {**TINY_OVERRIDES, "detection.proposals.cache_dir": str(cache_dir)}.items():
    *sections, field = key.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[field] = value
  return config


def test_short_run_detects_and_evaluates(tmp_path):
  workdir = tmp_path / "work"
  summary = run.run(tiny_config(tmp_path / "cache"), str(workdir))
  out = workdir / "detection"
  for name in ("report.md", "metrics.json", "detections.json"):
    assert (out / name).exists(), name
  assert sorted(os.listdir(out / "images")) == ["test_00000.png", "test_00001.png"]
  for key in ("mAP_voc07", "mAP_voc10", "mAP_coco_ap50"):
    assert 0.0 <= summary[key] <= 1.0 and not math.isnan(summary[key])
  assert 0.0 < summary["proposal_recall_iou50"] <= 1.0
  # Beside every AP: the same proposals ranked by area alone, and whether the classifier beats it.
  assert 0.0 <= summary["size_prior_baseline"]["mAP_voc07"] <= 1.0
  assert "Size-prior baseline" in (out / "report.md").read_text()
  with open(out / "detections.json") as f:
    detections = json.load(f)["detections"]
  assert len(detections) == summary["num_detections"] > 0
  assert {d["class"] for d in detections} <= {"circle", "square", "triangle"}
  assert all(0 <= v <= 64 for d in detections for v in d["bbox"])
  report = (out / "report.md").read_text()
  assert "| **mAP** |" in report and "| circle |" in report
  assert_picture(
      out / "precision_recall.png",
      precision_recall_figure.WIDTH_PX,
      precision_recall_figure.HEIGHT_PX,
  )
  # The classifier was trained by the training system (checkpoint, model config recorded).
  variables, model_config = artifacts.load_model_variables(str(workdir / "classifier_0"))
  assert model_config["num_classes"] == 4 and "classifier" in variables["params"]

  # Detection only, reusing the classifier and the cached proposals: same detections.
  again_config = tiny_config(tmp_path / "cache")
  again_config.detection.train = False
  again = run.run(again_config, str(workdir))
  assert again["mAP_voc10"] == summary["mAP_voc10"]
  assert again["num_detections"] == summary["num_detections"]
  assert summary["proposal_cache"] == {"hits": 0, "misses": 7}
  assert again["proposal_cache"] == {"hits": 3, "misses": 0}


def test_a_stopped_classifier_stops_the_run_before_detection(tmp_path, monkeypatch):
  import train

  trained = []

  def stopped_by_a_signal(config, workdir):
    trained.append(workdir)
    return {"stopped_by": "SIGTERM", "step": 2}

  monkeypatch.setattr(train, "train_and_evaluate", stopped_by_a_signal)
  workdir = tmp_path / "work"
  summary = run.run(tiny_config(tmp_path / "cache"), str(workdir))
  assert summary == {"stopped_by": "SIGTERM", "classifier": str(workdir / "classifier_0")}
  assert trained == [str(workdir / "classifier_0")]
  # Nothing was scored with the interrupted classifier: no report, no metrics.
  assert not (workdir / "detection").exists()
