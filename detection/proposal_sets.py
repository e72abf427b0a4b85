"""Which boxes the region classifier sees (paper section 8), and how the choices compare.

`build` gives every split's proposals for detection.proposals.method:
    'selective_search'  selective search at proposals.superpixel_scale (cached, proposals.py)
    'multibox'          the top multibox.top_n boxes of a MultiBox network trained first on the
                        same training split (multibox_proposals.py)
    'union'             both, MultiBox's near-duplicates of selective-search boxes removed: the
                        paper's "combining the Selective Search approach with multi-box
                        predictions", with the superpixel size doubled (scale 2)

With detection.compare_proposal_sets, `compare` measures on the test split, for selective search
at superpixel scale 1, at the configured scale, MultiBox alone and the union: proposals per
image, recall at IoU >= 0.5 (the paper's coverage), and the AP of the whole pipeline with each
set, scored by the same region classifier(s) (trained on `method`'s proposals) with the same
NMS and limits. `plot_recall` draws recall against the number of proposals kept per image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from detection import metrics
from detection import multibox_proposals as multibox_lib
from detection import proposals as proposals_lib
from runtime import figures

RECALL_FILE_NAME = "proposal_recall.png"
WIDTH_PX, HEIGHT_PX = 800, 550


@dataclasses.dataclass
class ProposalSets:
  """Per split: the selective-search boxes (None with method 'multibox'), MultiBox's (None
  with 'selective_search') and the boxes the pipeline uses."""

  selective: dict[str, list[np.ndarray]] | None
  multibox: dict[str, multibox_lib.Proposals] | None
  chosen: dict[str, list[np.ndarray]]


def build(config, workdir: str, data, compute_selective, cache_dir: str):
  """Every split's proposals for config.detection.proposals.method; MultiBox is prepared and
  trained first when the method needs it (and detection.train is on). Returns ProposalSets,
  or {'stopped_by', 'classifier'} when a signal stopped MultiBox's training (saved)."""
  section = config.detection
  method = section.proposals.method
  selective = compute_selective() if method != "multibox" else None
  boxes = None
  if method != "selective_search":
    if section.train:
      multibox_lib.prepare_records(config, workdir, data)
      stopped = multibox_lib.train(config, workdir)
      if stopped:
        return stopped
    boxes = multibox_lib.infer(config, workdir, data.splits, cache_dir)
  chosen = {
      name: combine(
          method,
          selective and selective[name],
          boxes and boxes[name],
          section.proposals.union_dedup_iou,
      )
      for name in data.splits
  }
  return ProposalSets(selective, boxes, chosen)


def combine(
    method: str,
    selective: list[np.ndarray] | None,
    multibox: multibox_lib.Proposals | None,
    dedup_iou: float,
) -> list[np.ndarray]:
  if method == "selective_search":
    return selective
  if method == "multibox":
    return multibox.boxes
  return [
      multibox_lib.union(s, m, dedup_iou) for s, m in zip(selective, multibox.boxes, strict=True)
  ]


def selective_search_at_scale(split, cache_dir: str, section, scale: float) -> list[np.ndarray]:
  """Selective search at another superpixel scale, everything else as configured (cached)."""
  settings = dataclasses.replace(
      proposals_lib.ProposalSettings.from_config(section.proposals), superpixel_scale=scale
  )
  cache = proposals_lib.ProposalCache(cache_dir, settings)
  return [cache.get(split.image(index)) for index in range(len(split))]


@dataclasses.dataclass(frozen=True)
class SetMeasure:
  name: str
  proposals_per_image: float
  recall: float
  result: metrics.DetectionMetrics


def measure(name: str, proposals, ground_truths, detections, class_names, section) -> SetMeasure:
  recall, _ = metrics.proposal_recall(proposals, ground_truths)
  result = metrics.evaluate_detections(
      detections, ground_truths, class_names, section.eval_iou, section.coco_max_dets
  )
  return SetMeasure(name, float(np.mean([len(p) for p in proposals])), recall, result)


def recall_curve(proposals, ground_truths, counts) -> list[float]:
  """Recall at IoU >= 0.5 keeping each image's first n proposals, for each n of counts."""
  return [metrics.proposal_recall([p[:n] for p in proposals], ground_truths)[0] for n in counts]


def plot_recall(sets: dict[str, list[np.ndarray]], ground_truths, path: str, title: str) -> str:
  """Recall against proposals kept per image (each set in its own order), log-scaled counts."""
  largest = max(max((len(p) for p in boxes), default=1) for boxes in sets.values())
  counts = np.unique(np.round(np.geomspace(1, max(largest, 2), 40)).astype(int))
  figure = figures.new_figure(WIDTH_PX, HEIGHT_PX)
  axes = figure.subplots()
  for name, boxes in sets.items():
    # A union lists selective search's boxes first: dashed, so the curve it shares with
    # selective search alone stays visible under it.
    style = "--" if name.startswith("union") else "-"
    axes.plot(counts, recall_curve(boxes, ground_truths, counts), style, linewidth=1.8, label=name)
  axes.set_xscale("log")
  axes.set_xlabel("proposals kept per image (each method's own order)")
  axes.set_ylabel("recall of ground-truth boxes at IoU >= 0.5")
  axes.set_ylim(0.0, 1.02)
  axes.set_title(title)
  axes.grid(True, alpha=0.3)
  axes.legend(loc="lower right", fontsize="small")
  return figures.save_png(figure, path)


def paper_direction(scale_1: SetMeasure, scale_2: SetMeasure, union: SetMeasure) -> str:
  """Whether section 8's claim replays here: the union has fewer proposals than selective
  search at scale 1 with equal or higher recall, and a higher mAP (VOC07) than scale 2 alone."""
  fewer = union.proposals_per_image < scale_1.proposals_per_image
  recall = union.recall >= scale_1.recall
  better = union.result.map_voc07 > scale_2.result.map_voc07
  verdict = "replays" if fewer and recall and better else "does NOT replay"
  return (
      f"The paper's direction (section 8) {verdict} here: the union has "
      f"{union.proposals_per_image:.0f} proposals per image against {scale_1.proposals_per_image:.0f} "
      f"at scale 1 ({'fewer' if fewer else 'not fewer'}), recall {100 * union.recall:.1f}% against "
      f"{100 * scale_1.recall:.1f}% ({'equal or higher' if recall else 'lower'}), and mAP VOC07 "
      f"{100 * union.result.map_voc07:.1f} against {100 * scale_2.result.map_voc07:.1f} for scale 2 "
      f"alone ({'higher' if better else 'not higher'})."
  )


def markdown(
    measures: list[SetMeasure], extra: dict[str, metrics.DetectionMetrics], verdict: str = ""
) -> str:
  """The proposal table and the AP table of each proposal set (and of the extra detectors)."""
  lines = [
      "## Proposal sets (test split)",
      "",
      "| proposals | per image | recall IoU>=0.5 | mAP VOC07 | mAP VOC10+ | COCO AP50 |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  for m in measures:
    r = m.result
    lines.append(
        f"| {m.name} | {m.proposals_per_image:.1f} | {100 * m.recall:.1f}% | "
        f"{100 * r.map_voc07:.1f} | {100 * r.map_voc10:.1f} | {100 * r.map_coco_ap50:.1f} |"
    )
  for name, r in extra.items():
    lines.append(
        f"| {name} | | | {100 * r.map_voc07:.1f} | {100 * r.map_voc10:.1f} | "
        f"{100 * r.map_coco_ap50:.1f} |"
    )
  if verdict:
    lines += ["", verdict]
  return "\n".join(lines) + "\n"
