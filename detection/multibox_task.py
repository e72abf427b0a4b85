"""MultiBox as a task of the training system (train/tasks.py) and its evaluator.

`TASK` (`config.task='multibox'`): the loss of detection/multibox.py on the box targets the
'multibox:<dir>' source carries, alpha = config.multibox_location_weight. Train metrics: the two
loss terms and the mean confidence on matched priors.

Evaluator 'multibox_recall' (train/evaluators.py registers it): on the eval split, each image's
boxes decoded as for proposals (prior + offset, NMS at IoU 0.7, the top `EVAL_TOP_N` by
confidence) and the share of ground-truth boxes with one at IoU >= 0.5 ("coverage", paper
section 8): `recall`, `recall_at_10` (the 10 most confident), and `prior_recall`, the same
measure for the K priors themselves (what the network starts from), plus the eval loss terms.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from detection import metrics, multibox
from runtime import mesh as mesh_lib
from train import tasks

EVAL_TOP_N = 200
EVAL_NMS_IOU = 0.7


def multibox_loss(output, batch, config: ml_collections.ConfigDict):
  loss, parts = multibox.loss(
      output.offsets,
      output.logits,
      batch["matched"],
      batch["target_offsets"],
      config.multibox_location_weight,
  )
  matched = batch["matched"]
  confidence = jax.nn.sigmoid(output.logits)
  parts["matched_confidence"] = jnp.sum(confidence * matched) / jnp.maximum(jnp.sum(matched), 1.0)
  return loss, parts


TASK = tasks.Task(
    loss=multibox_loss,
    headline=("location_loss", "confidence_loss", "matched_confidence"),
    evaluators=("multibox_recall",),
    source_kinds=("multibox",),
    model_names=("multibox",),
)


def build_recall(model, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  import input_pipeline
  from input_pipeline import sources

  priors = sources.get_source(config.data).priors
  top_n = min(EVAL_TOP_N, len(priors))

  def forward(variables, batch):
    output = model.apply(variables, batch["image"], train=False)
    location, confidence = multibox.loss_terms(
        output.offsets, output.logits, batch["matched"], batch["target_offsets"]
    )
    mask = batch["mask"].astype(jnp.float32)
    # The raw outputs too, gathered: each process then scores every image alike on the host.
    return {
        "location_loss": jnp.sum(location * mask),
        "confidence_loss": jnp.sum(confidence * mask),
        "offsets": output.offsets,
        "logits": output.logits,
        **{name: batch[name] for name in ("boxes", "num_boxes", "mask")},
    }

  step = jax.jit(forward, out_shardings=mesh_lib.replicated(mesh))

  def evaluate(variables: dict[str, Any]) -> dict[str, float]:
    dataset = input_pipeline.create_eval_dataset(config.data, config.eval_batch_size)
    totals = dict.fromkeys(("boxes", "recall", "recall_at_10", "prior_recall", "images"), 0)
    losses = {"location_loss": 0.0, "confidence_loss": 0.0}
    for batch in input_pipeline.prefetch_to_mesh(dataset.as_numpy_iterator(), mesh):
      out = jax.device_get(step(variables, batch))
      for i in np.flatnonzero(out["mask"]):
        truth = out["boxes"][i, : out["num_boxes"][i]]
        boxes, _ = multibox.decode(
            priors, out["offsets"][i], out["logits"][i], 1, 1, top_n=top_n, nms_iou=EVAL_NMS_IOU
        )
        totals["boxes"] += len(truth)
        totals["recall"] += metrics.covered_boxes(truth, boxes)
        totals["recall_at_10"] += metrics.covered_boxes(truth, boxes[:10])
        totals["prior_recall"] += metrics.covered_boxes(truth, priors[:top_n])
        totals["images"] += 1
      for name in losses:
        losses[name] += float(out[name])
    count = max(totals["images"], 1)
    share = lambda name: totals[name] / totals["boxes"] if totals["boxes"] else float("nan")
    return {
        "recall": share("recall"),
        "recall_at_10": share("recall_at_10"),
        "prior_recall": share("prior_recall"),
        **{name: value / count for name, value in losses.items()},
        "count": float(totals["images"]),
    }

  return evaluate
