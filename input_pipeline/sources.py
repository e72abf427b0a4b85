"""One interface over every place examples come from, chosen by the `data.source` string.

    'digits'          8x8 digits shipped in scikit-learn (digits.py)
    'tfds:<name>'     a TFDS image-classification dataset (tfds_source.py)
    'folder:<root>'   an image folder root/<class>/<image> (folder.py)
    '<kind>:<arg>'    a source registered from outside this package with `register_source`,
                      e.g. 'regions:<dir>' (detection/regions.py, R-CNN region classifiers)

A source answers three questions: how many classes, how many examples a split has, and what
one process's part of a split looks like (a `Shard`). Examples are dicts
{'image': encoded bytes (tf.string) or uint8 [H, W, 3], 'label': int32}; decoding and
augmentation happen later in the pipeline, so skipped examples are never decoded.
"""
import abc
import dataclasses
import functools
import importlib
from typing import Callable

import ml_collections
import tensorflow as tf

SOURCE_FORMS = "'digits', 'tfds:<dataset name>' or 'folder:<root directory>'"

# kind -> factory(argument, data_config) -> Source, for sources defined by other packages.
_REGISTERED_SOURCES: dict[str, Callable[[str, ml_collections.ConfigDict], 'Source']] = {}
# Kinds that modules of this repository register when imported: imported on first use, so
# every binary resolves them (main.py with --config.data.source=regions:DIR included)
# without this package importing theirs.
_REGISTERING_MODULES = {'regions': 'detection.regions'}


@dataclasses.dataclass(frozen=True)
class Shard:
  """This process's part of one split.

  ordered: builds the examples in a fixed order (evaluation, caching).
  shuffled: builds one epoch in the order chosen by an int64 [2] seed tensor. Only TensorFlow
    ops, because the training pipeline calls it inside `flat_map`, once per epoch.
  """
  num_examples: int
  ordered: Callable[[], tf.data.Dataset]
  shuffled: Callable[[tf.Tensor], tf.data.Dataset]


class Source(abc.ABC):
  """A dataset with named splits of labelled images."""

  @property
  @abc.abstractmethod
  def num_classes(self) -> int:
    ...

  @abc.abstractmethod
  def num_examples(self, split: str) -> int:
    """Examples in the whole split, over all processes."""

  @abc.abstractmethod
  def shard(self, split: str, process_index: int, process_count: int) -> Shard:
    ...


def scalar_seed(seed: tf.Tensor) -> tf.Tensor:
  """An int64 scalar for APIs that take one (Dataset.shuffle), hashed from a [2] seed.

  `stateless_fold_in` keeps its data in the second element, so taking one element would
  throw away half of the seed; a stateless draw mixes both.
  """
  return tf.random.stateless_uniform([], seed, minval=None, maxval=None, dtype=tf.int64)


def buffer_shuffled(ordered: Callable[[], tf.data.Dataset],
                    buffer_size: int) -> Callable[[tf.Tensor], tf.data.Dataset]:
  """Epochs for sources without random access: a seeded shuffle buffer over the stream."""

  def shuffled(seed):
    return ordered().shuffle(buffer_size, seed=scalar_seed(seed), reshuffle_each_iteration=False)

  return shuffled


def register_source(kind: str, factory: Callable[[str, ml_collections.ConfigDict], 'Source']
                    ) -> None:
  """Makes `config.data.source='<kind>:<argument>'` build `factory(argument, data_config)`."""
  if kind in ('digits', 'tfds', 'folder'):
    raise ValueError(f'source kind {kind!r} is built in')
  _REGISTERED_SOURCES[kind] = factory


def parse_source(source: str) -> tuple[str, str]:
  """'tfds:imagenet2012' -> ('tfds', 'imagenet2012'); 'digits' -> ('digits', '')."""
  kind, _, argument = source.partition(':')
  if kind not in _REGISTERED_SOURCES and kind in _REGISTERING_MODULES:
    importlib.import_module(_REGISTERING_MODULES[kind])  # calls register_source
  if kind == 'digits' and not argument:
    return kind, argument
  if (kind in ('tfds', 'folder') or kind in _REGISTERED_SOURCES) and argument:
    return kind, argument
  kinds = sorted(set(_REGISTERED_SOURCES) | set(_REGISTERING_MODULES))
  forms = SOURCE_FORMS + ''.join(f", '{k}:<...>'" for k in kinds)
  raise ValueError(f'config.data.source={source!r}: expected {forms}')


def get_source(config: ml_collections.ConfigDict) -> Source:
  """The source named by config.data.source."""
  # Imported here so that, e.g., the digits source never waits for TFDS to import.
  kind, argument = parse_source(config.source)
  if kind == 'digits':
    from input_pipeline import digits  # pylint: disable=g-import-not-at-top
    return digits.DigitsSource(config.image_size)
  if kind in _REGISTERED_SOURCES:
    return _REGISTERED_SOURCES[kind](argument, config)
  if kind == 'tfds':
    # Not cached: a TFDS builder is cheap, and one built under tfds.testing.mock_data must
    # not outlive the mock.
    from input_pipeline import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.TfdsSource(argument, config.data_dir, config.shuffle_buffer)
  return _image_folder(argument, config.folder_val_fraction, config.folder_check,
                       config.on_corrupt)


@functools.lru_cache(maxsize=16)
def _image_folder(root, val_fraction, check, on_corrupt) -> Source:
  """Built once per process and settings: the file list is scanned and checked only once,
  so a corrupt file is also logged only once."""
  from input_pipeline import folder  # pylint: disable=g-import-not-at-top
  return folder.ImageFolderSource(root, val_fraction=val_fraction, check=check,
                                  on_corrupt=on_corrupt)
