"""The embedded default dataset: scikit-learn's 8x8 handwritten digits, no download needed.

1,797 grey images with values 0..16 (UCI "Optical Recognition of Handwritten Digits"), shipped
inside scikit-learn. A fixed stratified split gives 1,437 training and 360 test images.
Images are upscaled to the configured size and the grey value is replicated to RGB, so the
same model and augmentation code runs on them as on photos. Everything stays in memory as
8x8 arrays (115 kB); upscaling happens per example, lazily, inside tf.data.
"""

import functools
import re

import ml_collections
import numpy as np
import tensorflow as tf

from input_pipeline import sharding, sources
from input_pipeline.traced import as_written

NUM_CLASSES = 10
TEST_SIZE = 360  # 1,797 - 360 = 1,437 training images
SPLIT_SEED = 0  # fixed forever: changing it would change every reported digits number
SPLIT_ALIASES = {"validation": "test"}


@functools.cache
def digits_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train', 'test', 'all'} -> (uint8 images [N, 8, 8] in 0..255, int32 labels [N])."""
  from sklearn import datasets as sklearn_datasets
  from sklearn import model_selection

  digits = sklearn_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  labels = digits.target.astype(np.int32)
  train_index, test_index = model_selection.train_test_split(
      np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
  )
  # Sorted, so the ordered (evaluation) stream follows the original file order.
  splits = {
      "train": np.sort(train_index),
      "test": np.sort(test_index),
      "all": np.arange(len(labels)),
  }
  return {name: (images[index], labels[index]) for name, index in splits.items()}


def upscale_to_rgb(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 [8, 8] -> uint8 [S, S, 3]: bilinear upscaling, grey copied to three channels."""
  grey = tf.cast(image[..., tf.newaxis], tf.float32)
  resized = tf.image.resize(grey, [image_size, image_size], method="bilinear")
  resized = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
  return tf.image.grayscale_to_rgb(resized)


_SLICED_SPLIT = re.compile(r"(\w+)\[(-?\d*):(-?\d*)\]")


class DigitsSource(sources.Source):
  """scikit-learn digits; splits 'train' (1,437), 'test' (360, alias 'validation'), 'all'."""

  def __init__(self, image_size: int):
    self._image_size = image_size

  @property
  def num_classes(self) -> int:
    return NUM_CLASSES

  def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A named split, or a slice of one in TFDS's notation: 'test[:60]', 'train[100:200]'."""
    sliced = _SLICED_SPLIT.fullmatch(split)
    name, start, stop = sliced.groups() if sliced else (split, "", "")
    name = SPLIT_ALIASES.get(name, name)
    splits = digits_splits()
    if name not in splits:
      raise ValueError(
          f"digits has splits 'train', 'test' (or 'validation') and 'all', or a "
          f"slice of one such as 'test[:60]'; got split {split!r} "
          "(config.data.train_split / eval_split)"
      )
    images, labels = splits[name]
    part = slice(int(start) if start else None, int(stop) if stop else None)
    if sliced and not len(labels[part]):
      raise ValueError(f"split {split!r} is empty: {name!r} has {len(labels)} examples")
    return images[part], labels[part]

  def num_examples(self, split: str) -> int:
    return len(self._split(split)[1])

  def shard(self, split: str, process_index: int, process_count: int) -> sources.Shard:
    images, labels = self._split(split)
    local = np.asarray(sharding.process_indices(len(labels), process_index, process_count))
    num_local = len(local)
    images = tf.constant(images[local])
    labels = tf.constant(labels[local])
    image_size = self._image_size

    def example(index):
      return {"image": upscale_to_rgb(images[index], image_size), "label": labels[index]}

    def ordered():
      return tf.data.Dataset.range(num_local).map(as_written(example))

    def shuffled(seed):
      # A full uniform permutation each epoch: the data is in memory, so no buffer is needed.
      order = tf.random.experimental.stateless_shuffle(tf.range(num_local, dtype=tf.int64), seed)
      return tf.data.Dataset.from_tensor_slices(order).map(as_written(example))

    return sources.Shard(
        num_examples=num_local,
        ordered=ordered,
        shuffled=shuffled,
        global_index=sharding.strided_index(process_index, process_count),
    )


def from_config(argument: str, data_config: ml_collections.ConfigDict) -> DigitsSource:
  """The 'digits' source (registered in sources.py)."""
  del argument  # 'digits' takes none
  return DigitsSource(data_config.image_size)
