"""MultiBox training examples: written once as TFRecords, served as the 'multibox:<dir>' source.

`write_split` stores, per image, its encoded pixels, its ground-truth boxes (normalised) and its
MultiBox targets (detection/multibox.py: `targets`) twice: for the image as it is and for its
mirror image, because matching depends on the boxes and the priors only and is done here, on the
host, once (the Hungarian algorithm has no tf.data form). The manifest holds the priors.

`MultiBoxSource` serves each image whole, resized to S x S (boxes are image-normalised, so they
do not move), mirrored with probability 1/2 per training example (a stateless draw from the
example's position, so resumed runs see the same choice) together with the matching targets.
The pipeline's own geometry must then leave the image alone: data.crop_area_range and
crop_aspect_range (1, 1), data.flip False, data.eval_resize_ratio 1 (checked, named in the
error); its photometric distortions apply as usual. Examples:

    {'image': uint8 [S, S, 3], 'label': 0, 'matched': float32 [K], 'target_offsets': [K, 4],
     'boxes': float32 [G, 4] (zero rows past 'num_boxes'), 'num_boxes': int32}

G is the most boxes any image of the records has, so batches have one shape.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import ml_collections
import numpy as np
import tensorflow as tf

from detection import multibox
from input_pipeline import decode, sharding, sources
from input_pipeline.traced import as_written

MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class MatchSettings:
  matching: str = "bipartite"
  iou_threshold: float = 0.5


def mirror(boxes: np.ndarray) -> np.ndarray:
  """Normalised boxes of the left-right mirrored image."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1)


def _floats(values: np.ndarray) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values).tolist()))


def _record(
    encoded: bytes, boxes: np.ndarray, priors: np.ndarray, settings: MatchSettings
) -> bytes:
  plain = multibox.targets(priors, boxes, settings.matching, settings.iou_threshold)
  mirrored = multibox.targets(priors, mirror(boxes), settings.matching, settings.iou_threshold)
  feature = {
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
      "boxes": _floats(boxes),
      "matched": _floats(plain.matched),
      "target_offsets": _floats(plain.offsets),
      "mirrored_matched": _floats(mirrored.matched),
      "mirrored_target_offsets": _floats(mirrored.offsets),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(split, priors: np.ndarray, path: str, settings: MatchSettings) -> dict:
  """One record per image of a `DetectionSplit` (every image, with or without boxes)."""
  stats = {"num_images": 0, "num_boxes": 0, "max_boxes": 0, "matched_priors": 0}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path + ".tmp") as writer:
    for index, annotation in enumerate(split.annotations):
      boxes = multibox.normalise(annotation.boxes, annotation.height, annotation.width)
      boxes = np.clip(boxes, 0.0, 1.0)
      record = _record(split.encoded(index), boxes, priors, settings)
      stats["num_images"] += 1
      stats["num_boxes"] += len(boxes)
      stats["max_boxes"] = max(stats["max_boxes"], len(boxes))
      assigned = multibox.match(priors, boxes, settings.matching, settings.iou_threshold)
      stats["matched_priors"] += int((assigned >= 0).sum())
      writer.write(record)
  os.replace(path + ".tmp", path)
  return stats


def write_manifest(
    directory: str, priors: np.ndarray, settings: MatchSettings, split_stats: dict[str, dict]
) -> None:
  manifest = {
      "priors": np.asarray(priors, np.float64).tolist(),
      "settings": dataclasses.asdict(settings),
      "max_boxes": max(max(s["max_boxes"] for s in split_stats.values()), 1),
      "splits": {name: {"file": f"{name}.tfrecord", **s} for name, s in split_stats.items()},
  }
  with open(os.path.join(directory, MANIFEST) + ".tmp", "w") as f:
    json.dump(manifest, f, indent=2)
  os.replace(os.path.join(directory, MANIFEST) + ".tmp", os.path.join(directory, MANIFEST))


def read_priors(directory: str) -> np.ndarray:
  with open(os.path.join(directory, MANIFEST)) as f:
    return np.asarray(json.load(f)["priors"], np.float32)


_IDENTITY_GEOMETRY = {
    "crop_area_range": (1.0, 1.0),
    "crop_aspect_range": (1.0, 1.0),
    "flip": False,
    "eval_resize_ratio": 1.0,
}


class MultiBoxSource(sources.Source):
  """Splits of a directory written by `write_split` + `write_manifest`."""

  def __init__(self, directory: str, data_config: ml_collections.ConfigDict):
    self.directory = os.path.abspath(directory)
    path = os.path.join(self.directory, MANIFEST)
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"config.data.source='multibox:{directory}': no {path}; MultiBox records are "
          "written by `python -m eval.detect` with detection.proposals.method 'multibox' or "
          "'union' (detection/multibox_proposals.py)."
      )
    for field, wanted in _IDENTITY_GEOMETRY.items():
      value = data_config[field]
      if (tuple(value) if isinstance(value, (tuple, list)) else value) != wanted:
        raise ValueError(
            f"config.data.{field}={value!r}: the multibox source serves whole images with "
            f"their box targets (mirroring them itself), so the pipeline must not crop or "
            f"flip: set --config.data.{field}={wanted!r}."
        )
    if data_config.cache:
      raise ValueError(
          "config.data.cache=True: the multibox source caches its resized images itself; "
          "set --config.data.cache=false."
      )
    with open(path) as f:
      self.manifest = json.load(f)
    self.priors = np.asarray(self.manifest["priors"], np.float32)
    self.size = data_config.image_size
    self.shuffle_buffer = data_config.shuffle_buffer

  @property
  def num_classes(self) -> int:
    return 1  # objectness; the box targets are the supervision

  def _split(self, split: str) -> dict:
    if split not in self.manifest["splits"]:
      raise ValueError(
          f"multibox:{self.directory} has splits {sorted(self.manifest['splits'])}, got {split!r}"
      )
    return self.manifest["splits"][split]

  def num_examples(self, split: str) -> int:
    return self._split(split)["num_images"]

  def _parse(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    k = len(self.priors)
    fixed = lambda shape: tf.io.FixedLenFeature(shape, tf.float32)
    parsed = tf.io.parse_single_example(
        serialized,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            "boxes": tf.io.VarLenFeature(tf.float32),
            "matched": fixed([k]),
            "target_offsets": fixed([k, 4]),
            "mirrored_matched": fixed([k]),
            "mirrored_target_offsets": fixed([k, 4]),
        },
    )
    image = tf.image.resize(decode.decode_rgb(parsed["image"]), [self.size, self.size])
    boxes = tf.reshape(tf.sparse.to_dense(parsed["boxes"]), [-1, 4])
    num_boxes = tf.shape(boxes)[0]
    max_boxes = self.manifest["max_boxes"]
    return {
        **parsed,
        "image": tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8),
        "boxes": tf.ensure_shape(
            tf.pad(boxes, [[0, max_boxes - num_boxes], [0, 0]]), [max_boxes, 4]
        ),
        "num_boxes": tf.cast(num_boxes, tf.int32),
        "label": tf.constant(0, tf.int32),
    }

  @staticmethod
  def _choose(example: dict[str, tf.Tensor], mirrored: tf.Tensor) -> dict[str, tf.Tensor]:
    """The example as is, or mirrored with the mirrored targets (ground truth mirrored too)."""
    boxes = example["boxes"]
    flipped = tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1)
    valid = tf.range(tf.shape(boxes)[0]) < example["num_boxes"]
    flipped = tf.where(valid[:, None], flipped, 0.0)
    pick = lambda a, b: tf.where(mirrored, a, b)
    return {
        "image": pick(tf.image.flip_left_right(example["image"]), example["image"]),
        "label": example["label"],
        "matched": pick(example["mirrored_matched"], example["matched"]),
        "target_offsets": pick(example["mirrored_target_offsets"], example["target_offsets"]),
        "boxes": pick(flipped, boxes),
        "num_boxes": example["num_boxes"],
    }

  def shard(self, split: str, process_index: int, process_count: int) -> sources.Shard:
    info = self._split(split)
    num_local = len(sharding.process_indices(info["num_images"], process_index, process_count))
    records = tf.data.TFRecordDataset(os.path.join(self.directory, info["file"]))
    records = records.shard(process_count, process_index).map(
        as_written(self._parse), num_parallel_calls=tf.data.AUTOTUNE
    )
    records = records.cache()  # S x S uint8 per image: small at MultiBox's input sizes
    buffer = max(1, min(self.shuffle_buffer, num_local))

    def ordered():
      return records.map(as_written(lambda example: self._choose(example, tf.constant(False))))

    def shuffled(seed):
      def mirrored_at(position, example):
        draw = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(seed, position)
        )
        return self._choose(example, draw < 0.5)

      stream = records.shuffle(
          buffer, seed=sources.scalar_seed(seed), reshuffle_each_iteration=False
      )
      return stream.enumerate().map(as_written(mirrored_at), num_parallel_calls=tf.data.AUTOTUNE)

    return sources.Shard(
        num_examples=num_local,
        ordered=ordered,
        shuffled=shuffled,
        global_index=sharding.strided_index(process_index, process_count),
    )


@functools.lru_cache(maxsize=8)
def _cached_source(directory: str, manifest_mtime: float, frozen: tuple) -> MultiBoxSource:
  del manifest_mtime  # part of the key only: rewritten records are read again
  return MultiBoxSource(directory, ml_collections.ConfigDict(dict(frozen)))


def from_config(argument: str, data_config: ml_collections.ConfigDict) -> MultiBoxSource:
  """The 'multibox:<dir>' source (registered in input_pipeline/sources.py)."""
  directory = os.path.abspath(argument)
  manifest = os.path.join(directory, MANIFEST)
  mtime = os.path.getmtime(manifest) if os.path.exists(manifest) else -1.0
  fields = (*_IDENTITY_GEOMETRY, "image_size", "shuffle_buffer", "cache")
  frozen = tuple(
      (
          name,
          tuple(data_config[name])
          if isinstance(data_config[name], (list, tuple))
          else data_config[name],
      )
      for name in fields
  )
  return _cached_source(directory, mtime, frozen)
