"""The whole R-CNN run: data -> proposals -> region records -> classifiers -> detections -> AP.

Workdir layout:
    regions/              train.tfrecord, test.tfrecord, manifest.json (the 'regions:' source)
    classifier_<m>/       training workdir of ensemble member m (checkpoints, summary.json, ...)
    detection/            report.md, metrics.json, detections.json, images/*.png,
                          precision_recall.png (per-class curves, precision_recall_figure.py)
Every stage is resumable: proposals come from the on-disk cache, a finished classifier resumes
at its last step (train_and_evaluate), so rerunning the command only redoes detection.
On several JAX processes (--config.distributed=true) each process computes selective search
and scores regions for its own images and every process ends with all detections; process 0
alone writes the region records and the report (detection/multihost.py).
"""
from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from runtime import figures
from detection import config as config_lib
from detection import datasets
from detection import metrics
from detection import multihost
from detection import precision_recall_figure as pr_figure
from detection import proposals as proposals_lib
from detection import regions
from detection import report
from detection import scoring
from runtime import mesh as mesh_lib, progress


def _proposals_for(split, cache: proposals_lib.ProposalCache, name: str,
                   cache_counts: dict[str, int]) -> list[np.ndarray]:
  """Every image's proposals on every process; each process computes its own images' share."""
  start, hits, misses = time.time(), cache.hits, cache.misses
  local_count = len(multihost.local_indices(len(split)))
  done = 0
  bar = progress.progress_bar(local_count, f"proposals {name}", unit="image")

  def compute(index):
    nonlocal done
    done += 1
    bar.update(1)
    if done % 200 == 0:
      logging.info("proposals %s: %d/%d of this process's images (%.1fs)", name, done,
                   local_count, time.time() - start)
    return cache.get(split.image(index))

  boxes = multihost.compute_and_share(len(split), compute, columns=4)
  bar.close()
  hits, misses = multihost.sum_over_processes([cache.hits - hits, cache.misses - misses])
  cache_counts["hits"] += hits
  cache_counts["misses"] += misses
  logging.info("proposals %s: %d images in %.1fs (%d from the cache, %d computed), %.1f per image",
               name, len(split), time.time() - start, hits, misses,
               np.mean([len(b) for b in boxes]) if boxes else 0.0)
  return boxes


def _write_region_records(region_dir: str, settings: regions.RegionSettings, class_names,
                          splits: dict[str, tuple]) -> None:
  stats = {name: regions.prepare_region_split(split, proposals,
                                              os.path.join(region_dir, f"{name}.tfrecord"), settings)
           for name, (split, proposals) in splits.items()}
  regions.write_manifest(region_dir, class_names=class_names, settings=settings, split_stats=stats)
  logging.info("region records: %s", json.dumps(stats))


def _write_report(out: str, summary: dict, result: metrics.DetectionMetrics, notes, title: str,
                  detections: metrics.Detections, ground_truths, test_split, class_names,
                  section) -> None:
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(report.markdown_table(result, title=title, notes=notes))
  with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump(summary, f, indent=2)
  report.write_detections_json(os.path.join(out, "detections.json"), detections, test_split,
                               class_names, {"dataset": section.dataset, "split": section.test_split})
  report.write_visualisations(os.path.join(out, "images"), test_split, detections, class_names,
                              section.num_visualized, section.visualize_min_score)
  curves = metrics.voc_curves(detections, ground_truths, len(class_names), section.eval_iou)
  figures.draw_or_warn("the precision-recall curves", lambda: pr_figure.plot_precision_recall(
      curves, result, os.path.join(out, pr_figure.FILE_NAME), title=title,
      iou_threshold=section.eval_iou))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the region classifier(s) unless done, then detects and evaluates the test split.

  Returns the metrics summary, or {'stopped_by': signal, 'classifier': dir} when a signal
  stopped a classifier's training (saved; detection waits for the rerun).
  """
  from train import train_and_evaluate  # pylint: disable=g-import-not-at-top

  start = time.time()
  timings = {}
  config_lib.validate(config)
  section = config.detection
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)

  model_dirs = [os.path.join(workdir, f"classifier_{m}") for m in range(section.num_models)]
  training = bool(section.train and model_dirs)
  test_split = datasets.load_split(section, section.test_split, section.max_test_images)
  splits = {"test": test_split}
  if training:
    splits["train"] = datasets.load_split(section, section.train_split, section.max_train_images)
  class_names = datasets.class_names_of(list(splits.values()))
  for name, split in splits.items():
    datasets.log_report(f"{section.dataset} {name}", split.report)
  if config.model.num_classes != len(class_names) + 1:
    raise ValueError(f"config.model.num_classes={config.model.num_classes}, but {section.dataset} "
                     f"has {len(class_names)} classes plus background: set "
                     f"--config.model.num_classes={len(class_names) + 1}.")
  timings["load_data"] = time.time() - start

  settings = proposals_lib.ProposalSettings.from_config(section.proposals)
  cache = proposals_lib.ProposalCache(section.proposals.cache_dir, settings)
  mark = time.time()
  cache_counts = {"hits": 0, "misses": 0}  # over all processes
  test_proposals = _proposals_for(test_split, cache, "test", cache_counts)
  region_settings = regions.RegionSettings.from_config(section.regions)
  region_dir = os.path.join(workdir, "regions")
  if training:
    train_split = splits["train"]
    train_proposals = _proposals_for(train_split, cache, "train", cache_counts)
    timings["proposals"] = time.time() - mark
    mark = time.time()
    if multihost.is_leader():
      _write_region_records(region_dir, region_settings, class_names,
                            {"train": (train_split, train_proposals),
                             "test": (test_split, test_proposals)})
    multihost.barrier("region records written")
    timings["region_records"] = time.time() - mark
    mark = time.time()
    for index, model_dir in enumerate(model_dirs):
      trained = train_and_evaluate(config_lib.training_config(config, region_dir, index), model_dir)
      if trained["stopped_by"]:  # preempted: detect only with finished classifiers
        logging.warning("Classifier %s stopped by %s at step %d; run the same command again to "
                        "resume it, then detect.", model_dir, trained["stopped_by"],
                        trained["step"])
        return {"stopped_by": trained["stopped_by"], "classifier": model_dir}
    timings["train_classifiers"] = time.time() - mark
  else:
    timings["proposals"] = time.time() - mark

  mark = time.time()
  members = model_dirs + [os.path.abspath(os.path.expanduser(d)) for d in section.extra_model_dirs]
  classifiers = scoring.load_classifiers(members, section.use_ema)
  scores = scoring.score_proposals(
      test_split, test_proposals, classifiers, config.data.image_size,
      section.regions.context_padding, config.data.normalization, section.inference_batch_size,
      mesh_lib.create_data_mesh())
  detections = scoring.detect(test_proposals, scores, nms_iou=section.nms_iou,
                              score_threshold=section.score_threshold,
                              max_detections=section.max_detections_per_image)
  timings["detect"] = time.time() - mark

  ground_truths = test_split.ground_truths()
  result = metrics.evaluate_detections(detections, ground_truths, class_names, section.eval_iou,
                                       section.coco_max_dets)
  recall, num_gt = metrics.proposal_recall(test_proposals, ground_truths)
  mean_proposals = float(np.mean([len(p) for p in test_proposals])) if test_proposals else 0.0
  timings["total"] = time.time() - start
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

  summary = {
      **result.to_dict(),
      "proposal_recall_iou50": recall, "proposal_gt_boxes": num_gt,
      "proposals_per_image": mean_proposals,
      "proposal_cache": cache_counts,
      "num_test_images": len(test_split), "num_detections": int(len(detections.scores)),
      "ensemble": members, "use_ema": section.use_ema,
      "annotation_report": {name: split.report.to_dict() for name, split in splits.items()},
      "seconds": {k: round(v, 1) for k, v in timings.items()},
      "load_average_1min_at_end": load,
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
      "process_count": jax.process_count(),
  }
  notes = [f"Proposals: selective search fast, superpixel scale x{settings.superpixel_scale} "
           f"(k={settings.k}), {mean_proposals:.1f} per image; recall (IoU >= 0.5) "
           f"{100 * recall:.1f}% of {num_gt} ground-truth boxes.",
           f"Ensemble of {len(members)} region classifier(s), softmax averaged; per-class NMS at "
           f"IoU {section.nms_iou}; at most {section.max_detections_per_image} detections per image.",
           "Wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
           + f"; 1-min load average at the end {load:.1f} on {os.cpu_count()} CPUs."]
  title = f"Detection on {section.dataset} ({section.test_split}, {len(test_split)} images)"
  out = os.path.join(workdir, "detection")
  if multihost.is_leader():
    _write_report(out, summary, result, notes, title, detections, ground_truths, test_split,
                  class_names, section)
    logging.info("mAP@0.5: VOC07 %.4f, VOC10+ %.4f, COCO AP50 %.4f; proposal recall %.4f; %.0fs. "
                 "Report: %s", result.map_voc07, result.map_voc10, result.map_coco_ap50, recall,
                 timings["total"], os.path.join(out, "report.md"))
  return summary
