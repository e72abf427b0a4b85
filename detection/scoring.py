"""Scoring proposals: warped regions -> ensemble softmax -> per-class NMS -> detections.

GoogLeNet section 8: no SVMs and no box regression; each region's class scores are the
softmax of the region classifier, averaged over the ensemble (the paper used 6 networks),
then greedy NMS per class at IoU 0.3 and a cap on detections per image.

Regions are warped in tf.data (all proposals of an image in one crop_and_resize, the same
warp and normalisation as in training), batched to a fixed size with mask-False padding so one
compiled forward serves every batch, and sharded over the device mesh like training batches. On several processes each warps its own
images' regions and every process receives every score (see `score_proposals`).

Regions are cut once, in the run's `config.data.normalization`; an ensemble member whose
directory records another input convention (input.json, e.g. one fine-tuned from the Caffe
import) gets them converted on the device, as in classification (eval/renormalize.py). The
grey padding around a region near the image border stays the run's mean colour.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import functools
import math
from typing import Any

from absl import logging
import jax
import numpy as np
import tensorflow as tf

from detection import boxes as box_ops
from detection import metrics, warp
from eval import renormalize
from inception import create_model_from_config
import input_pipeline
from input_pipeline import decode, photometric, sharding
from input_pipeline.traced import as_written
from runtime import artifacts, progress
from runtime import mesh as mesh_lib


def region_batches(
    split,
    proposals: Sequence[np.ndarray],
    crop_size: int,
    context_padding: int,
    normalization: str,
    batch_size: int,
    image_indices: Sequence[int] | None = None,
    num_batches: int | None = None,
) -> tf.data.Dataset:
  """Batches {'image': normalised float32 [B, S, S, 3], 'image_index', 'proposal_index', 'mask'}.

  The regions of `image_indices` (default: every image), padded with mask False to
  `num_batches` batches (default: as few as hold them all).
  """
  fill = warp.fill_pixel(normalization)
  image_indices = range(len(split)) if image_indices is None else image_indices

  def generate():
    for index in image_indices:
      if len(proposals[index]):
        yield index, split.encoded(index), np.asarray(proposals[index], np.float32)

  def warp_image(index, encoded, boxes):
    regions = warp.warp_regions(decode.decode_rgb(encoded), boxes, crop_size, context_padding, fill)
    count = tf.shape(boxes)[0]
    return {
        "image": photometric.normalize(tf.cast(regions, tf.float32) / 255.0, normalization),
        "image_index": tf.fill([count], tf.cast(index, tf.int32)),
        "proposal_index": tf.range(count, dtype=tf.int32),
    }

  dataset = tf.data.Dataset.from_generator(
      generate,
      output_signature=(
          tf.TensorSpec([], tf.int64),
          tf.TensorSpec([], tf.string),
          tf.TensorSpec([None, 4], tf.float32),
      ),
  )
  dataset = dataset.map(as_written(warp_image), num_parallel_calls=tf.data.AUTOTUNE).unbatch()
  if num_batches is None:
    num_batches = max(1, math.ceil(sum(len(proposals[i]) for i in image_indices) / batch_size))
  padding = {
      "image": tf.zeros([crop_size, crop_size, 3], tf.float32),
      "image_index": tf.constant(0, tf.int32),
      "proposal_index": tf.constant(0, tf.int32),
  }
  dataset = sharding.pad_with_mask(dataset, padding, num_batches * batch_size)
  return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """One ensemble member: the model config and variables it was saved with, and the input
  convention its weights expect (its input.json; None when it records none: the run's)."""

  directory: str
  model_config: dict
  variables: Any
  normalization: str | None = None


def load_classifiers(model_dirs: Sequence[str], use_ema: bool) -> list[Classifier]:
  """Each workdir's or exported model's classifier, with the input convention it records."""
  loaded = []
  for directory in model_dirs:
    logging.info("Restoring the region classifier in %s.", directory)
    variables, model_config = artifacts.load_model_variables(directory, use_ema=use_ema)
    if model_config is None:
      raise FileNotFoundError(
          f"{directory} does not record its model config "
          f"({artifacts.MODEL_CONFIG_FILE}); cannot rebuild the classifier."
      )
    convention = artifacts.read_input_convention(directory) or {}
    loaded.append(Classifier(directory, model_config, variables, convention.get("normalization")))
  outputs = {c.model_config["num_classes"] for c in loaded}
  if len(outputs) != 1:
    raise ValueError(f"ensemble members disagree on the number of outputs: {sorted(outputs)}")
  return loaded


@functools.lru_cache(maxsize=8)
def _predictor(model: Any, mesh: jax.sharding.Mesh):
  """Compiled softmax forward of one (hashable) model, shared by every call and by the
  members of one architecture and input convention."""
  return jax.jit(
      lambda variables, images: jax.nn.softmax(
          model.apply(variables, images, train=False).logits, axis=-1
      ),
      out_shardings=mesh_lib.replicated(mesh),
  )


def _member_predictor(classifier: Classifier, normalization: str, mesh: jax.sharding.Mesh):
  model = renormalize.for_run(
      create_model_from_config(classifier.model_config),
      classifier.normalization,
      normalization,
      classifier.directory,
  )
  return _predictor(model, mesh)


@functools.lru_cache(maxsize=8)
def _to_every_process(mesh: jax.sharding.Mesh):
  """A sharded batch -> the whole batch on every device, so every process can read all rows."""
  return jax.jit(lambda tree: tree, out_shardings=mesh_lib.replicated(mesh))


def score_proposals(
    split,
    proposals: Sequence[np.ndarray],
    classifiers: Sequence[Classifier],
    crop_size: int,
    context_padding: int,
    normalization: str,
    batch_size: int,
    mesh: jax.sharding.Mesh,
) -> list[np.ndarray]:
  """Per image, float32 [P, num_classes + 1]: softmax averaged over the ensemble.

  `batch_size` regions per forward pass over all processes. Each process warps the regions
  of its own images (every process_count-th one); the global batch's outputs reach every
  process, so all end with every image's scores. Processes run the same number of batches
  (computed from the proposal counts, which every process holds), padding with mask False.
  """
  process_count = jax.process_count()
  host_batch = sharding.per_host_batch_size(batch_size, process_count, mesh.devices.size)
  shards = [sharding.process_indices(len(split), p, process_count) for p in range(process_count)]
  largest = max(sum(len(proposals[i]) for i in shard) for shard in shards)
  num_batches = max(1, math.ceil(largest / host_batch))
  replicated = mesh_lib.replicated(mesh)
  members = [
      (
          _member_predictor(classifier, normalization, mesh),
          jax.device_put(classifier.variables, replicated),
      )
      for classifier in classifiers
  ]
  num_outputs = classifiers[0].model_config["num_classes"]
  scores = [np.zeros((len(p), num_outputs), np.float32) for p in proposals]
  dataset = region_batches(
      split,
      proposals,
      crop_size,
      context_padding,
      normalization,
      host_batch,
      shards[jax.process_index()],
      num_batches,
  )
  gather = _to_every_process(mesh)
  logging.info(
      "Scoring %d regions of %d images in %d batches of %d per process with %d classifier(s); "
      "the first batch includes XLA compilation.",
      sum(len(p) for p in proposals),
      len(split),
      num_batches,
      host_batch,
      len(members),
  )
  tracker = progress.Progress("scoring regions", num_batches, "batch", detail=f" of {host_batch}")
  for batch in input_pipeline.prefetch_to_mesh(dataset.as_numpy_iterator(), mesh):
    probabilities = sum(
        np.asarray(predict(variables, batch["image"])) for predict, variables in members
    ) / len(members)
    where = jax.tree.map(
        np.asarray, gather({k: batch[k] for k in ("image_index", "proposal_index", "mask")})
    )
    for row in np.flatnonzero(where["mask"]):
      scores[where["image_index"][row]][where["proposal_index"][row]] = probabilities[row]
    tracker.update(1)
  tracker.close()
  return scores


def detect_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    nms_iou: float,
    score_threshold: float,
    max_detections: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(0-based labels, scores, boxes) of one image from its proposals' class scores.

  scores: [P, num_classes + 1] with background in column 0. Per class: drop scores below the
  threshold, greedy NMS; then the `max_detections` highest over all classes (stable order).
  """
  labels, kept_scores, kept_boxes = [], [], []
  for column in range(1, scores.shape[1]):
    candidates = np.flatnonzero(scores[:, column] >= score_threshold)
    keep = candidates[box_ops.nms(boxes[candidates], scores[candidates, column], nms_iou)]
    labels.append(np.full(len(keep), column - 1, np.int64))
    kept_scores.append(scores[keep, column])
    kept_boxes.append(boxes[keep])
  if not labels:
    return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 4), np.float32)
  labels, kept_scores = np.concatenate(labels), np.concatenate(kept_scores)
  kept_boxes = np.concatenate(kept_boxes).reshape(-1, 4)
  order = np.argsort(-kept_scores, kind="stable")[:max_detections]
  return labels[order], kept_scores[order], kept_boxes[order]


def size_prior_scores(
    proposals: Sequence[np.ndarray], image_sizes: Sequence[tuple[int, int]], num_classes: int
) -> list[np.ndarray]:
  """The baseline without a classifier: every class scores a proposal by its share of the
  image area ("largest first"), background by the rest; [P, num_classes + 1] per image."""
  scores = []
  for boxes, (height, width) in zip(proposals, image_sizes, strict=True):
    share = box_ops.areas(np.asarray(boxes, np.float64).reshape(-1, 4)) / float(height * width)
    scores.append(
        np.concatenate([1.0 - share[:, None], np.repeat(share[:, None], num_classes, 1)], 1)
    )
  return scores


def detect(
    proposals: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    *,
    nms_iou: float,
    score_threshold: float,
    max_detections: int,
    name: str = "detections",
) -> metrics.Detections:
  """Per-class NMS and limits on every image; `name` labels the log line."""
  parts = [
      detect_image(
          np.asarray(b, np.float32).reshape(-1, 4),
          s,
          nms_iou=nms_iou,
          score_threshold=score_threshold,
          max_detections=max_detections,
      )
      for b, s in zip(proposals, scores, strict=True)
  ]
  if not parts:
    return metrics.Detections.empty()
  logging.info("%d %s on %d images.", sum(len(p[0]) for p in parts), name, len(parts))
  return metrics.Detections.create(
      np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)]),
      np.concatenate([p[0] for p in parts]),
      np.concatenate([p[1] for p in parts]),
      np.concatenate([p[2] for p in parts]).reshape(-1, 4),
  )
