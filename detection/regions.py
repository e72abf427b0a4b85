"""Labelled regions for fine-tuning: prepared once as TFRecords, served as the 'regions:<dir>' source.

`prepare_region_split` labels every candidate box of an image (its proposals plus, with
include_gt_boxes, its ground-truth boxes, as R-CNN does) by the max IoU with the image's
ground truth: >= fg_iou -> foreground, label = that box's class + 1; in bg_iou_range ->
background, label 0; anything else (e.g. IoU in [0, 0.1) with bg_iou_range (0.1, 0.5)) is not
used and counted. One record per image holds its encoded pixels and its labelled candidates.

Class index 0 is background; dataset class k is classifier output k + 1 (R-CNN, Fast R-CNN),
so the region classifier has num_classes + 1 outputs.

`RegionSource` (registered as 'regions' with input_pipeline.sources) turns the records into
region examples {'image': uint8 [S, S, 3], 'label'}: per image, a stateless draw of
`regions_per_image` candidates, round(fg_fraction * regions_per_image) of them foreground,
warped in one crop_and_resize (warp.py). Whole images' samples are consecutive and a batch
size that is a multiple of regions_per_image holds whole images, so *every* minibatch is 25%
foreground (Fast R-CNN's hierarchical sampling; R-CNN drew 32 + 96 over all images). An image
short of foreground repeats its foreground boxes (a new permutation is used first); an image
with none fills with background (counted as images_without_foreground). An "epoch" is every
training image once; S = data.image_size, fill from data.normalization.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import ml_collections
import numpy as np
import tensorflow as tf

from detection import boxes as box_ops
from detection import warp
from input_pipeline import decode, sharding, sources
from input_pipeline.traced import as_written

MANIFEST = "manifest.json"
# Decoded images of a split are cached in memory when they take less than this.
_CACHE_LIMIT_BYTES = 2 << 30


@dataclasses.dataclass(frozen=True)
class RegionSettings:
  context_padding: int
  fg_iou: float
  bg_iou_range: tuple[float, float]
  fg_fraction: float
  regions_per_image: int
  include_gt_boxes: bool
  seed: int

  @classmethod
  def from_config(cls, config) -> RegionSettings:
    values = {f.name: config[f.name] for f in dataclasses.fields(cls)}
    values["bg_iou_range"] = tuple(values["bg_iou_range"])
    return cls(**values)

  @property
  def num_foreground(self) -> int:
    return int(round(self.fg_fraction * self.regions_per_image))


def label_candidates(
    candidates: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray, settings: RegionSettings
) -> np.ndarray:
  """int64 [N]: class + 1 (foreground), 0 (background) or -1 (unused) per candidate box."""
  labels = np.full(len(candidates), -1, np.int64)
  if not len(gt_boxes):
    overlap = np.zeros(len(candidates))
    best = np.zeros(len(candidates), np.int64)
  else:
    ious = box_ops.iou_matrix(candidates, gt_boxes)
    overlap, best = ious.max(axis=1), ious.argmax(axis=1)
  low, high = settings.bg_iou_range
  labels[(overlap >= low) & (overlap < high)] = 0
  foreground = overlap >= settings.fg_iou
  if len(gt_boxes):
    labels[foreground] = np.asarray(gt_labels)[best[foreground]] + 1
  return labels


def _example(encoded: bytes, boxes: np.ndarray, labels: np.ndarray) -> bytes:
  feature = {
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
      "boxes": tf.train.Feature(float_list=tf.train.FloatList(value=boxes.reshape(-1).tolist())),
      "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=labels.tolist())),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def prepare_region_split(
    split, proposals: list[np.ndarray], path: str, settings: RegionSettings
) -> dict:
  """Writes one TFRecord of labelled candidates per image of `split`; returns its statistics."""
  stats = dict(
      num_images=0,
      skipped_images_without_regions=0,
      images_without_foreground=0,
      foreground=0,
      background=0,
      unused=0,
      decoded_bytes=0,
  )
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path + ".tmp") as writer:
    for index, annotation in enumerate(split.annotations):
      candidates = np.asarray(proposals[index], np.float32).reshape(-1, 4)
      if settings.include_gt_boxes:
        candidates = np.concatenate([candidates, annotation.boxes], axis=0)
      labels = label_candidates(candidates, annotation.boxes, annotation.labels, settings)
      used = labels >= 0
      stats["unused"] += int((~used).sum())
      if not used.any():
        stats["skipped_images_without_regions"] += 1
        continue
      stats["foreground"] += int((labels > 0).sum())
      stats["background"] += int((labels == 0).sum())
      stats["images_without_foreground"] += int(not (labels > 0).any())
      stats["num_images"] += 1
      stats["decoded_bytes"] += annotation.height * annotation.width * 3
      writer.write(_example(split.encoded(index), candidates[used], labels[used]))
  os.replace(path + ".tmp", path)
  return stats


def write_manifest(
    directory: str, *, class_names, settings: RegionSettings, split_stats: dict[str, dict]
) -> None:
  manifest = {
      "class_names": ["__background__", *class_names],
      "num_classes": len(class_names) + 1,
      "settings": dataclasses.asdict(settings),
      "splits": {
          name: {"file": f"{name}.tfrecord", **stats} for name, stats in split_stats.items()
      },
  }
  with open(os.path.join(directory, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=2)


def sample_region_indices(
    labels: tf.Tensor, seed: tf.Tensor, num_regions: int, num_foreground: int
) -> tf.Tensor:
  """int64 [num_regions]: num_foreground foreground candidates first, then background ones.

  Each group is a stateless permutation of its candidates, cycled when it has fewer than
  needed; with no foreground (or no background) the other group fills every slot.
  """
  foreground = tf.where(labels > 0)[:, 0]
  background = tf.where(labels == 0)[:, 0]
  fg_seed, bg_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  foreground = tf.random.experimental.stateless_shuffle(foreground, fg_seed)
  background = tf.random.experimental.stateless_shuffle(background, bg_seed)
  num_fg, num_bg = tf.size(foreground), tf.size(background)
  want_fg = tf.where(num_fg == 0, 0, tf.where(num_bg == 0, num_regions, num_foreground))
  picks = tf.concat(
      [
          tf.gather(foreground, tf.range(want_fg) % tf.maximum(num_fg, 1)),
          tf.gather(background, tf.range(num_regions - want_fg) % tf.maximum(num_bg, 1)),
      ],
      axis=0,
  )
  picks.set_shape([num_regions])
  return picks


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
  parsed = tf.io.parse_single_example(
      serialized,
      {
          "image": tf.io.FixedLenFeature([], tf.string),
          "boxes": tf.io.VarLenFeature(tf.float32),
          "labels": tf.io.VarLenFeature(tf.int64),
      },
  )
  return {
      "image": decode.decode_rgb(parsed["image"]),
      "boxes": tf.reshape(tf.sparse.to_dense(parsed["boxes"]), [-1, 4]),
      "labels": tf.sparse.to_dense(parsed["labels"]),
  }


class RegionSource(sources.Source):
  """Splits 'train' and 'test' of a directory written by `prepare_region_split`."""

  def __init__(self, directory: str, data_config: ml_collections.ConfigDict):
    self.directory = os.path.abspath(directory)
    manifest_path = os.path.join(self.directory, MANIFEST)
    if not os.path.exists(manifest_path):
      raise FileNotFoundError(
          f"config.data.source='regions:{directory}': no {manifest_path}; "
          "region records are written by `python -m eval.detect`."
      )
    if data_config.cache:
      raise ValueError(
          "config.data.cache=True would freeze one draw of regions; the regions "
          "source caches decoded images itself. Set --config.data.cache=false."
      )
    with open(manifest_path) as f:
      self.manifest = json.load(f)
    settings = dict(
        self.manifest["settings"], bg_iou_range=tuple(self.manifest["settings"]["bg_iou_range"])
    )
    self.settings = RegionSettings(**settings)
    self.crop_size = data_config.image_size
    warp.context_scale(self.crop_size, self.settings.context_padding)  # raises if too large
    self.fill = warp.fill_pixel(data_config.normalization)
    self.shuffle_buffer = data_config.shuffle_buffer

  @property
  def num_classes(self) -> int:
    return self.manifest["num_classes"]

  def _split(self, split: str) -> dict:
    if split not in self.manifest["splits"]:
      raise ValueError(
          f"regions:{self.directory} has splits {sorted(self.manifest['splits'])}, "
          f"got {split!r}"
      )
    return self.manifest["splits"][split]

  def num_examples(self, split: str) -> int:
    return self._split(split)["num_images"] * self.settings.regions_per_image

  def _regions_of(self, record: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
    picks = sample_region_indices(
        record["labels"], seed, self.settings.regions_per_image, self.settings.num_foreground
    )
    images = warp.warp_regions(
        record["image"],
        tf.gather(record["boxes"], picks),
        self.crop_size,
        self.settings.context_padding,
        self.fill,
    )
    images.set_shape([self.settings.regions_per_image, self.crop_size, self.crop_size, 3])
    return {"image": images, "label": tf.cast(tf.gather(record["labels"], picks), tf.int32)}

  def shard(self, split: str, process_index: int, process_count: int) -> sources.Shard:
    info = self._split(split)
    num_local = len(sharding.process_indices(info["num_images"], process_index, process_count))
    records = tf.data.TFRecordDataset(os.path.join(self.directory, info["file"]))
    records = records.shard(process_count, process_index).map(
        as_written(parse_record), num_parallel_calls=tf.data.AUTOTUNE
    )
    if info["decoded_bytes"] <= _CACHE_LIMIT_BYTES:
      records = records.cache()  # built once: every epoch reads the same cache
    eval_seed = tf.constant([self.settings.seed, process_index], tf.int64)
    buffer = max(1, min(self.shuffle_buffer, num_local))

    def regions(stream, seed):
      return (
          stream.enumerate()
          .map(
              as_written(
                  lambda position, record: self._regions_of(
                      record, tf.random.experimental.stateless_fold_in(seed, position)
                  )
              ),
              num_parallel_calls=tf.data.AUTOTUNE,
          )
          .unbatch()
      )

    def ordered():
      return regions(records, eval_seed)

    def shuffled(seed):
      return regions(
          records.shuffle(buffer, seed=sources.scalar_seed(seed), reshuffle_each_iteration=False),
          seed,
      )

    per_image = self.settings.regions_per_image
    image_index = sharding.strided_index(process_index, process_count)
    return sources.Shard(
        num_examples=num_local * per_image,
        ordered=ordered,
        shuffled=shuffled,
        # The r-th region of the shard's i-th image: the split's image_index(i), region r.
        global_index=lambda k: image_index(k // per_image) * per_image + k % per_image,
    )


@functools.lru_cache(maxsize=8)
def _cached_source(
    directory: str,
    manifest_mtime: float,
    image_size: int,
    normalization: str,
    cache: bool,
    shuffle_buffer: int,
) -> RegionSource:
  del manifest_mtime  # part of the cache key only: rewritten records are read again
  config = ml_collections.ConfigDict(
      dict(
          image_size=image_size,
          normalization=normalization,
          cache=cache,
          shuffle_buffer=shuffle_buffer,
      )
  )
  return RegionSource(directory, config)


def from_config(argument: str, data_config: ml_collections.ConfigDict) -> RegionSource:
  """The 'regions:<dir>' source (registered in input_pipeline/sources.py)."""
  # The manifest is read once per settings, not at every get_source call of the pipeline.
  directory = os.path.abspath(argument)
  manifest = os.path.join(directory, MANIFEST)
  mtime = os.path.getmtime(manifest) if os.path.exists(manifest) else -1.0
  return _cached_source(
      directory,
      mtime,
      data_config.image_size,
      data_config.normalization,
      data_config.cache,
      data_config.shuffle_buffer,
  )
