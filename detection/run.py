"""The whole R-CNN run: data -> proposals -> region records -> classifiers -> detections -> AP.

Workdir layout:
    proposal_cache/       selective search per image and settings; MultiBox's boxes per split
                          and model (multibox_<key>/); delete to recompute
    multibox/records/     MultiBox examples and priors (the 'multibox:' source), with
    multibox/model/       MultiBox's training workdir, when proposals.method is multibox/union
    regions/              train.tfrecord, test.tfrecord, manifest.json (the 'regions:' source)
    classifier_<m>/       training workdir of ensemble member m (checkpoints, summary.json, ...)
    detection/            report.md, metrics.json, detections.json, images/*.png,
                          precision_recall.png (per-class curves, precision_recall_figure.py),
                          proposal_recall.png (with compare_proposal_sets, proposal_sets.py)
The phases are functions of their own, for a notebook or a script that wants one of them:
`load_data`, `compute_proposals` (selective search), `proposal_sets.build` (the configured
method, training MultiBox first when it needs it), `write_region_records`, `train_classifiers` (the training
system on the 'regions:<workdir>/regions' source, which main.py can also train from),
`detect` (ensemble scoring and NMS); `run` chains them and writes the report.
Every stage is resumable: proposals come from the on-disk cache, a finished classifier resumes
at its last step (train_and_evaluate), so rerunning the command only redoes detection.
On several JAX processes (--config.distributed=true) each process computes selective search
and scores regions for its own images and every process ends with all detections; process 0
alone writes the region records and the report (detection/multihost.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import logging
import jax
import ml_collections
import numpy as np

from detection import config as config_lib
from detection import datasets, metrics, multihost, proposal_sets, regions, report, scoring
from detection import precision_recall_figure as pr_figure
from detection import proposals as proposals_lib
from runtime import figures, progress
from runtime import mesh as mesh_lib


def _proposals_for(
    split, cache: proposals_lib.ProposalCache, name: str, cache_counts: dict[str, int]
) -> list[np.ndarray]:
  """Every image's proposals on every process; each process computes its own images' share."""
  start, hits, misses = time.time(), cache.hits, cache.misses
  local_count = len(multihost.local_indices(len(split)))
  tracker = progress.Progress(
      f"proposals {name}", local_count, "image", detail=" (this process's share)"
  )

  def compute(index):
    boxes = cache.get(split.image(index))
    tracker.update(1)
    return boxes

  boxes = multihost.compute_and_share(len(split), compute, columns=4)
  tracker.close()
  hits, misses = multihost.sum_over_processes([cache.hits - hits, cache.misses - misses])
  cache_counts["hits"] += hits
  cache_counts["misses"] += misses
  logging.info(
      "proposals %s: %d images in %.1fs (%d from the cache, %d computed), %.1f per image",
      name,
      len(split),
      time.time() - start,
      hits,
      misses,
      np.mean([len(b) for b in boxes]) if boxes else 0.0,
  )
  return boxes


def _write_region_records(
    region_dir: str, settings: regions.RegionSettings, class_names, splits: dict[str, tuple]
) -> None:
  stats = {
      name: regions.prepare_region_split(
          split, proposals, os.path.join(region_dir, f"{name}.tfrecord"), settings
      )
      for name, (split, proposals) in splits.items()
  }
  regions.write_manifest(region_dir, class_names=class_names, settings=settings, split_stats=stats)
  logging.info("region records: %s", json.dumps(stats))


def _write_report(
    out: str,
    summary: dict,
    result: metrics.DetectionMetrics,
    notes,
    title: str,
    detections: metrics.Detections,
    ground_truths,
    test_split,
    class_names,
    section,
    extra_markdown: str = "",
) -> None:
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(report.markdown_table(result, title=title, notes=notes))
    if extra_markdown:
      f.write("\n" + extra_markdown)
  with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump(summary, f, indent=2)
  report.write_detections_json(
      os.path.join(out, "detections.json"),
      detections,
      test_split,
      class_names,
      {"dataset": section.dataset, "split": section.test_split},
  )
  report.write_visualisations(
      os.path.join(out, "images"),
      test_split,
      detections,
      class_names,
      section.num_visualized,
      section.visualize_min_score,
      section.visualize_max_boxes,
  )
  curves = metrics.voc_curves(detections, ground_truths, len(class_names), section.eval_iou)
  figures.draw_or_warn(
      "the precision-recall curves",
      lambda: pr_figure.plot_precision_recall(
          curves,
          result,
          os.path.join(out, pr_figure.FILE_NAME),
          title=title,
          iou_threshold=section.eval_iou,
      ),
  )


@dataclasses.dataclass
class DetectionData:
  """The loaded splits ('test', and 'train' when classifiers are trained) and class names."""

  splits: dict[str, datasets.DetectionSplit]
  class_names: tuple[str, ...]
  duplicates: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def load_data(config: ml_collections.ConfigDict, with_train: bool) -> DetectionData:
  """Phase 1: the test split (and the train split) of config.detection.dataset."""
  section = config.detection
  splits = {"test": datasets.load_split(section, section.test_split, section.max_test_images)}
  if with_train:
    splits["train"] = datasets.load_split(section, section.train_split, section.max_train_images)
  class_names = datasets.class_names_of(list(splits.values()))
  for name, split in splits.items():
    datasets.log_report(f"{section.dataset} {name}", split.report)
  if config.model.num_classes != len(class_names) + 1:
    raise ValueError(
        f"config.model.num_classes={config.model.num_classes}, but {section.dataset} "
        f"has {len(class_names)} classes plus background: set "
        f"--config.model.num_classes={len(class_names) + 1}."
    )
  duplicates = datasets.duplicate_images(splits)
  if duplicates:
    logging.warning(
        "%d byte-identical image pairs in %s (a pair across train and test inflates the "
        "test score): %s",
        len(duplicates),
        section.dataset,
        "; ".join(f"{a} = {b}" for a, b in duplicates[:10]),
    )
  return DetectionData(splits, class_names, duplicates)


def proposal_cache_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  return config.detection.proposals.cache_dir or os.path.join(workdir, "proposal_cache")


def compute_proposals(
    config: ml_collections.ConfigDict,
    workdir: str,
    data: DetectionData,
    cache_counts: dict[str, int],
) -> dict[str, list[np.ndarray]]:
  """Phase 2: selective-search boxes for every image of every split, cached on disk
  (`proposal_cache_dir`)."""
  settings = proposals_lib.ProposalSettings.from_config(config.detection.proposals)
  cache = proposals_lib.ProposalCache(proposal_cache_dir(config, workdir), settings)
  logging.info("Proposal cache: %s", cache.directory)
  return {
      name: _proposals_for(split, cache, name, cache_counts) for name, split in data.splits.items()
  }


def write_region_records(
    config: ml_collections.ConfigDict,
    workdir: str,
    data: DetectionData,
    proposals: dict[str, list[np.ndarray]],
) -> str:
  """Phase 3: labelled region records of both splits in <workdir>/regions (process 0 writes)."""
  region_dir = os.path.join(workdir, "regions")
  if multihost.is_leader():
    _write_region_records(
        region_dir,
        regions.RegionSettings.from_config(config.detection.regions),
        data.class_names,
        {name: (data.splits[name], proposals[name]) for name in ("train", "test")},
    )
  multihost.barrier("region records written")
  return region_dir


def classifier_dirs(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  return [os.path.join(workdir, f"classifier_{m}") for m in range(config.detection.num_models)]


def train_classifiers(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Phase 4: trains (or resumes) every region classifier on <workdir>/regions with the
  training system. None when all are trained; else {'stopped_by', 'classifier'} for the one a
  signal stopped (saved; rerun to resume)."""
  from train import train_and_evaluate

  region_dir = os.path.join(workdir, "regions")
  for index, model_dir in enumerate(classifier_dirs(config, workdir)):
    trained = train_and_evaluate(config_lib.training_config(config, region_dir, index), model_dir)
    if trained["stopped_by"]:  # preempted: detect only with finished classifiers
      logging.warning(
          "Classifier %s stopped by %s at step %d; run the same command again to "
          "resume it, then detect.",
          model_dir,
          trained["stopped_by"],
          trained["step"],
      )
      return {"stopped_by": trained["stopped_by"], "classifier": model_dir}
  return None


def ensemble_members(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """The classifiers trained in the workdir plus config.detection.extra_model_dirs."""
  extra = [os.path.abspath(os.path.expanduser(d)) for d in config.detection.extra_model_dirs]
  return classifier_dirs(config, workdir) + extra


def detect(
    config: ml_collections.ConfigDict,
    test_split: datasets.DetectionSplit,
    test_proposals: list[np.ndarray],
    classifiers: list[scoring.Classifier],
) -> metrics.Detections:
  """Phase 5: scores every test proposal with the ensemble (softmax averaged), per-class NMS."""
  section = config.detection
  scores = scoring.score_proposals(
      test_split,
      test_proposals,
      classifiers,
      config.data.image_size,
      section.regions.context_padding,
      config.data.normalization,
      section.inference_batch_size,
      mesh_lib.create_data_mesh(),
  )
  return scoring.detect(
      test_proposals,
      scores,
      nms_iou=section.nms_iou,
      score_threshold=section.score_threshold,
      max_detections=section.max_detections_per_image,
  )


def detect_by_size(
    config: ml_collections.ConfigDict,
    test_split: datasets.DetectionSplit,
    test_proposals: list[np.ndarray],
    num_classes: int,
) -> metrics.Detections:
  """The size-prior baseline's detections, through the same NMS and limits as `detect`."""
  section = config.detection
  sizes = [(a.height, a.width) for a in test_split.annotations]
  return scoring.detect(
      test_proposals,
      scoring.size_prior_scores(test_proposals, sizes, num_classes),
      nms_iou=section.nms_iou,
      score_threshold=section.score_threshold,
      max_detections=section.max_detections_per_image,
      name="size-prior baseline detections",
  )


def _multibox_count(section) -> int:
  """At most top_n boxes per image, and never more than the K priors it decodes."""
  return min(section.multibox.top_n, section.multibox.num_priors)


def _describe_method(section, settings: proposals_lib.ProposalSettings) -> str:
  selective = (
      f"selective search fast, superpixel scale x{settings.superpixel_scale:g} (k={settings.k})"
  )
  multibox = f"MultiBox top {_multibox_count(section)} ({section.multibox.num_priors} priors)"
  return {
      "selective_search": selective,
      "multibox": multibox,
      "union": f"{selective} + {multibox}, near-duplicates (IoU > "
      f"{section.proposals.union_dedup_iou}) removed",
  }[section.proposals.method]


_EXTRA_LABELS = {
    "multibox_own_confidence": "MultiBox boxes by their own confidence (no classifier)"
}


def _labelled(extra: dict) -> dict:
  return {_EXTRA_LABELS[name]: result for name, result in extra.items() if name in _EXTRA_LABELS}


def _compare_proposal_sets(config, data, built, classifiers, run_detections, cache_dir, out):
  """Recall and AP of the whole pipeline on the test split for each proposal set, the same
  region classifier(s) scoring all; with one class, MultiBox's own confidences too.
  `run_detections` are the run's own, on `built.chosen`: that set is not scored twice."""
  section = config.detection
  test_split = data.splits["test"]
  ground_truths = test_split.ground_truths()
  scale = section.proposals.superpixel_scale
  sets = {}  # the first is scale 1, the second the configured scale, the last the union
  if scale != 1.0:
    sets["selective search x1"] = proposal_sets.selective_search_at_scale(
        test_split, cache_dir, section, 1.0
    )
  # With method 'multibox' the run computed no selective search: do it here (cached).
  selective = (
      built.selective["test"]
      if built.selective is not None
      else proposal_sets.selective_search_at_scale(test_split, cache_dir, section, scale)
  )
  sets[f"selective search x{scale:g}"] = selective
  sets[f"MultiBox top {_multibox_count(section)}"] = built.multibox["test"].boxes
  sets[f"union x{scale:g} + MultiBox"] = (
      built.chosen["test"]  # the run's own proposals: not combined a second time
      if section.proposals.method == "union"
      else proposal_sets.combine(
          "union", selective, built.multibox["test"], section.proposals.union_dedup_iou
      )
  )
  measures = []
  for name, boxes in sets.items():
    if boxes is built.chosen["test"]:
      detections = run_detections
    else:
      detections = detect(config, test_split, boxes, classifiers)
    measures.append(
        proposal_sets.measure(name, boxes, ground_truths, detections, data.class_names, section)
    )
    logging.info(
        "proposal set %s: %.1f per image, recall %.4f, mAP VOC07 %.4f",
        name,
        measures[-1].proposals_per_image,
        measures[-1].recall,
        measures[-1].result.map_voc07,
    )
  extra = {}
  if len(data.class_names) == 1:
    own = built.multibox["test"]
    detections = scoring.detect(
        own.boxes,
        [np.stack([1.0 - s, s], axis=1) for s in own.scores],
        nms_iou=section.nms_iou,
        score_threshold=section.score_threshold,
        max_detections=section.max_detections_per_image,
        name="MultiBox-confidence detections",
    )
    extra["multibox_own_confidence"] = metrics.evaluate_detections(
        detections, ground_truths, data.class_names, section.eval_iou, section.coco_max_dets
    )
  if multihost.is_leader():
    os.makedirs(out, exist_ok=True)
    figures.draw_or_warn(
        "the proposal recall curves",
        lambda: proposal_sets.plot_recall(
            sets,
            ground_truths,
            os.path.join(out, proposal_sets.RECALL_FILE_NAME),
            f"Proposal recall on {section.dataset} {section.test_split} ({len(test_split)} images)",
        ),
    )
  if scale != 1.0:
    extra["verdict"] = proposal_sets.paper_direction(measures[0], measures[1], measures[-1])
  return measures, extra


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """All phases: trains the region classifier(s) unless done, then detects and evaluates the
  test split (phase 6: AP, report).

  Returns the metrics summary, or {'stopped_by': signal, 'classifier': dir} when a signal
  stopped a classifier's training (saved; detection waits for the rerun).
  """
  start = time.time()
  timings = {}
  config_lib.validate(config)
  section = config.detection
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)

  training = bool(section.train and section.num_models)
  method = section.proposals.method
  trains_multibox = section.train and method != "selective_search"
  data = load_data(config, with_train=training or trains_multibox)
  splits, class_names, test_split = data.splits, data.class_names, data.splits["test"]
  timings["load_data"] = time.time() - start

  settings = proposals_lib.ProposalSettings.from_config(section.proposals)
  mark = time.time()
  cache_counts = {"hits": 0, "misses": 0}  # over all processes
  cache_dir = proposal_cache_dir(config, workdir)
  built = proposal_sets.build(
      config,
      workdir,
      data,
      lambda: compute_proposals(config, workdir, data, cache_counts),
      cache_dir,
  )
  if isinstance(built, dict):  # MultiBox's training was stopped by a signal
    return built
  proposals = built.chosen
  test_proposals = proposals["test"]
  timings["proposals" if method == "selective_search" else "proposals_with_multibox"] = (
      time.time() - mark
  )
  if training:
    mark = time.time()
    write_region_records(config, workdir, data, proposals)
    timings["region_records"] = time.time() - mark
    mark = time.time()
    stopped = train_classifiers(config, workdir)
    if stopped:
      return stopped
    timings["train_classifiers"] = time.time() - mark

  mark = time.time()
  members = ensemble_members(config, workdir)
  classifiers = scoring.load_classifiers(members, section.use_ema)
  detections = detect(config, test_split, test_proposals, classifiers)
  timings["detect"] = time.time() - mark

  ground_truths = test_split.ground_truths()
  result = metrics.evaluate_detections(
      detections, ground_truths, class_names, section.eval_iou, section.coco_max_dets
  )
  baseline = metrics.evaluate_detections(
      detect_by_size(config, test_split, test_proposals, len(class_names)),
      ground_truths,
      class_names,
      section.eval_iou,
      section.coco_max_dets,
  )
  compared, compared_extra = [], {}
  if section.compare_proposal_sets:
    mark = time.time()
    compared, compared_extra = _compare_proposal_sets(
        config,
        data,
        built,
        classifiers,
        detections,
        cache_dir,
        os.path.join(workdir, "detection"),
    )
    timings["compare_proposal_sets"] = time.time() - mark
  recall, num_gt = metrics.proposal_recall(test_proposals, ground_truths)
  mean_proposals = float(np.mean([len(p) for p in test_proposals])) if test_proposals else 0.0
  timings["total"] = time.time() - start
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

  summary = {
      **result.to_dict(),
      "size_prior_baseline": {
          key: value for key, value in baseline.to_dict().items() if key != "per_class"
      },
      "proposal_recall_iou50": recall,
      "proposal_gt_boxes": num_gt,
      "proposals_per_image": mean_proposals,
      "proposal_cache": cache_counts,
      "proposal_method": method,
      "proposal_sets": [
          {
              "name": m.name,
              "proposals_per_image": m.proposals_per_image,
              "recall_iou50": m.recall,
              **{k: v for k, v in m.result.to_dict().items() if k != "per_class"},
          }
          for m in compared
      ],
      **{
          name: {k: v for k, v in r.to_dict().items() if k != "per_class"}
          for name, r in compared_extra.items()
          if name in _EXTRA_LABELS
      },
      **({"paper_direction": compared_extra["verdict"]} if "verdict" in compared_extra else {}),
      "num_test_images": len(test_split),
      "num_detections": int(len(detections.scores)),
      "ensemble": members,
      "use_ema": section.use_ema,
      "duplicate_images": [list(pair) for pair in data.duplicates],
      "annotation_report": {name: split.report.to_dict() for name, split in splits.items()},
      "seconds": {k: round(v, 1) for k, v in timings.items()},
      "load_average_1min_at_end": load,
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
      "process_count": jax.process_count(),
  }
  beats = result.map_voc07 > baseline.map_voc07
  notes = [
      f"Size-prior baseline (the same proposals ranked by area, no classifier, same NMS): mAP "
      f"VOC07 {100 * baseline.map_voc07:.1f}, VOC10+ {100 * baseline.map_voc10:.1f}, COCO AP50 "
      f"{100 * baseline.map_coco_ap50:.1f}; the region classifier "
      + ("beats it." if beats else "does NOT beat it: treat these detections as unlearned."),
      f"Proposals: {_describe_method(section, settings)}, {mean_proposals:.1f} per image; "
      f"recall (IoU >= 0.5) {100 * recall:.1f}% of {num_gt} ground-truth boxes.",
      f"Ensemble of {len(members)} region classifier(s), softmax averaged; per-class NMS at "
      f"IoU {section.nms_iou}; at most {section.max_detections_per_image} detections per image.",
      "Wall time: "
      + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
      + f"; 1-min load average at the end {load:.1f} on {os.cpu_count()} CPUs.",
  ]
  title = f"Detection on {section.dataset} ({section.test_split}, {len(test_split)} images)"
  out = os.path.join(workdir, "detection")
  if multihost.is_leader():
    _write_report(
        out,
        summary,
        result,
        notes,
        title,
        detections,
        ground_truths,
        test_split,
        class_names,
        section,
        (
            proposal_sets.markdown(
                compared, _labelled(compared_extra), compared_extra.get("verdict", "")
            )
            if compared
            else ""
        ),
    )
    logging.info(
        "mAP@0.5: VOC07 %.4f, VOC10+ %.4f, COCO AP50 %.4f; proposal recall %.4f; %.0fs. "
        "Report: %s",
        result.map_voc07,
        result.map_voc10,
        result.map_coco_ap50,
        recall,
        timings["total"],
        os.path.join(out, "report.md"),
    )
  return summary
