"""MultiBox proposals for R-CNN (paper section 8): priors, records, training, cached inference.

The phases, each callable alone (run.py chains them when detection.proposals.method is
'multibox' or 'union'):

    prepare_records   k-means priors from the training boxes; <workdir>/multibox/records
                      (the 'multibox:<dir>' source, detection/multibox_records.py)
    train             the training system on those records (config.task='multibox'), workdir
                      <workdir>/multibox/model: optimizer, schedule, EMA, checkpoints, resume
    infer             every image's top N boxes after NMS with their confidences, cached under
                      the proposal cache keyed by the model's variables (a retrained model
                      misses the cache, never reads stale boxes)
    union             selective search + MultiBox, near-duplicates removed

The network sees each image whole, resized to detection.multibox.image_size squared, as in
training; its boxes are mapped back to the image's pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os

from absl import logging
import jax
import ml_collections
import numpy as np
import tensorflow as tf

from detection import boxes as box_ops
from detection import multibox, multibox_records, multihost
from inception import create_model_from_config
from input_pipeline import photometric
from runtime import artifacts, progress


def multibox_dir(workdir: str) -> str:
  return os.path.join(workdir, "multibox")


def record_dir(workdir: str) -> str:
  return os.path.join(multibox_dir(workdir), "records")


def model_dir(workdir: str) -> str:
  return os.path.join(multibox_dir(workdir), "model")


def training_config(config: ml_collections.ConfigDict, records: str) -> ml_collections.ConfigDict:
  """The plain training config of the MultiBox network: the R-CNN config's recipe and trunk
  (model variant, width, dtype), the MultiBox task, whole-image input, its own epochs."""
  settings = config.detection.multibox
  train_config = ml_collections.ConfigDict(config.to_dict())
  del train_config["detection"]
  train_config.task = "multibox"
  train_config.evaluators = ("multibox_recall",)
  train_config.multibox_location_weight = settings.location_weight
  train_config.model.name = "multibox"
  train_config.model.num_priors = settings.num_priors
  train_config.model.trunk_layer = settings.trunk_layer
  train_config.model.num_classes = 1
  # The region classifier's init_from is not MultiBox's: this one fills the trunk only.
  train_config.init_from = settings.init_from
  train_config.init_from_into = "trunk"
  train_config.init_from_reinit = ("classifier",)  # the trunk's own, unused 1-class head
  data = train_config.data
  data.source = f"multibox:{records}"
  data.train_split, data.eval_split = "train", "test"
  data.image_size = settings.image_size
  data.crop_area_range, data.crop_aspect_range = (1.0, 1.0), (1.0, 1.0)
  data.flip, data.random_interpolation, data.cache = False, False, False
  data.eval_resize_ratio = 1.0
  train_config.num_epochs = settings.num_epochs
  train_config.num_train_steps = -1
  train_config.batch_size = settings.batch_size
  train_config.eval_batch_size = settings.batch_size
  train_config.base_learning_rate = settings.base_learning_rate
  train_config.lr_reference_batch_size = settings.batch_size
  train_config.lock()
  return train_config


def prepare_records(config: ml_collections.ConfigDict, workdir: str, data) -> np.ndarray:
  """Phase: priors and records (process 0 writes); returns the priors [K, 4] (normalised)."""
  settings = config.detection.multibox
  train = data.splits["train"]
  boxes = [
      np.clip(multibox.normalise(a.boxes, a.height, a.width), 0.0, 1.0) for a in train.annotations
  ]
  priors = multibox.kmeans_priors(np.concatenate(boxes), settings.num_priors, seed=settings.seed)
  directory = record_dir(workdir)
  if multihost.is_leader():
    match = multibox_records.MatchSettings(settings.matching, settings.match_iou)
    stats = {
        name: multibox_records.write_split(
            data.splits[name], priors, os.path.join(directory, f"{name}.tfrecord"), match
        )
        for name in ("train", "test")
    }
    multibox_records.write_manifest(directory, priors, match, stats)
    logging.info("MultiBox records (%d priors): %s", len(priors), json.dumps(stats))
  multihost.barrier("multibox records written")
  return priors


def train(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Phase: trains (or resumes) MultiBox; None when done, else {'stopped_by', 'classifier'}."""
  from train import train_and_evaluate

  trained = train_and_evaluate(training_config(config, record_dir(workdir)), model_dir(workdir))
  if trained["stopped_by"]:
    logging.warning(
        "MultiBox training stopped by %s at step %d; run the same command again to resume.",
        trained["stopped_by"],
        trained["step"],
    )
    return {"stopped_by": trained["stopped_by"], "classifier": model_dir(workdir)}
  return None


def model_key(variables, priors: np.ndarray, settings: ml_collections.ConfigDict, norm: str) -> str:
  """Digest of everything the boxes depend on: variables, priors, input size and decoding."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(variables):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  digest.update(np.asarray(priors, np.float32).tobytes())
  fields = {k: settings[k] for k in ("image_size", "top_n", "nms_iou")}
  digest.update(json.dumps({**fields, "normalization": norm}, sort_keys=True).encode())
  return digest.hexdigest()[:16]


def _network_input(image: np.ndarray, size: int, normalization: str) -> np.ndarray:
  """As the multibox source and the eval pipeline make it: bilinear resize, uint8, normalise."""
  resized = tf.image.resize(tf.convert_to_tensor(image), [size, size])
  pixels = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.float32) / 255.0
  return photometric.normalize(pixels, normalization).numpy()


@dataclasses.dataclass
class Proposals:
  boxes: list[np.ndarray]  # per image, float32 [n, 4] pixels, most confident first
  scores: list[np.ndarray]  # per image, float32 [n] confidences


def infer(
    config: ml_collections.ConfigDict, workdir: str, splits: dict, cache_dir: str
) -> dict[str, Proposals]:
  """Each split's MultiBox proposals, from the cache or computed (then cached); the model is
  loaded, keyed and compiled once for all of them."""
  settings = config.detection.multibox
  variables, model_config = artifacts.load_model_variables(
      model_dir(workdir), use_ema=config.detection.use_ema
  )
  priors = multibox_records.read_priors(record_dir(workdir))
  key = model_key(variables, priors, settings, config.data.normalization)

  @functools.cache
  def predict():  # built and compiled on the first cache miss only
    model = create_model_from_config(model_config)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return lambda images: apply(variables, images)

  result = {}
  for name, split in splits.items():
    contents = hashlib.sha256()
    for index in range(len(split)):
      contents.update(hashlib.sha256(split.encoded(index)).digest())
    path = os.path.join(cache_dir, f"multibox_{key}", f"{name}_{contents.hexdigest()[:16]}.npz")
    if os.path.exists(path):
      result[name] = _read_cached(path)
      logging.info("MultiBox proposals %s: from the cache %s", name, path)
      continue
    result[name] = _compute(config, split, name, predict(), priors)
    if multihost.is_leader():
      _write_cached(path, result[name])
  return result


def _compute(config, split, name: str, forward, priors: np.ndarray) -> Proposals:
  settings = config.detection.multibox
  batch_size = settings.batch_size
  result = Proposals([], [])
  tracker = progress.Progress(f"MultiBox proposals {name}", len(split), "image")
  for start in range(0, len(split), batch_size):
    indices = range(start, min(start + batch_size, len(split)))
    images = np.zeros((batch_size, settings.image_size, settings.image_size, 3), np.float32)
    for row, index in enumerate(indices):
      images[row] = _network_input(
          split.image(index), settings.image_size, config.data.normalization
      )
    output = jax.device_get(forward(images))
    for row, index in enumerate(indices):
      annotation = split.annotations[index]
      boxes, scores = multibox.decode(
          priors,
          output.offsets[row],
          output.logits[row],
          annotation.height,
          annotation.width,
          top_n=settings.top_n,
          nms_iou=settings.nms_iou,
      )
      result.boxes.append(boxes)
      result.scores.append(scores)
    tracker.update(len(indices))
  tracker.close()
  return result


def _read_cached(path: str) -> Proposals:
  with np.load(path) as cached:
    if not len(cached["counts"]):  # a split without images
      return Proposals([], [])
    ends = np.cumsum(cached["counts"])[:-1]
    return Proposals(list(np.split(cached["boxes"], ends)), list(np.split(cached["scores"], ends)))


def _write_cached(path: str, proposals: Proposals) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  partial = f"{path}.{os.getpid()}.tmp.npz"
  np.savez(
      partial,
      boxes=np.concatenate(proposals.boxes) if proposals.boxes else np.zeros((0, 4), np.float32),
      scores=np.concatenate(proposals.scores) if proposals.scores else np.zeros(0, np.float32),
      counts=np.asarray([len(b) for b in proposals.boxes], np.int64),
  )
  os.replace(partial, path)  # atomic: readers see the whole file or none


def union(selective: np.ndarray, boxes: np.ndarray, dedup_iou: float) -> np.ndarray:
  """Selective-search boxes, then each MultiBox box unless it overlaps a box already in the
  set at IoU > dedup_iou (a near-duplicate adds no coverage, only work for the classifier)."""
  pool = np.asarray(selective, np.float32).reshape(-1, 4)
  for box in np.asarray(boxes, np.float32).reshape(-1, 4):
    if len(pool) and box_ops.iou_matrix(box[None], pool).max() > dedup_iou:
      continue
    pool = np.concatenate([pool, box[None]])
  return pool
