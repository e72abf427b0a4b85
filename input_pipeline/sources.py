"""One interface over every place examples come from, chosen by the `data.source` string.

    'digits'          8x8 digits shipped in scikit-learn (digits.py)
    'tfds:<name>'     a TFDS image-classification dataset (tfds_source.py)
    'folder:<root>'   an image folder root/<class>/<image> (folder.py)
    'regions:<dir>'   R-CNN region records (detection/regions.py)
    'multibox:<dir>'  whole images with MultiBox box targets (detection/multibox_records.py)

Every kind, built in or not, is an entry of one registry: kind -> factory(argument,
data_config) -> Source, or a "module:function" string naming that factory, imported the
first time the kind is used (so this module imports none of its implementations, and any
binary resolves every kind). Adding one:

    from input_pipeline import sources

    class MySource(sources.Source): ...                 # num_classes, num_examples, shard

    sources.register_source('mine', lambda argument, data_config: MySource(argument))
    # or, without importing it yet: sources.register_source('mine', 'my_pkg.my_mod:from_config')
    # then --config.data.source=mine:<argument>

A source answers three questions: how many classes, how many examples a split has, and what
one process's part of a split looks like (a `Shard`). Examples are dicts
{'image': encoded bytes (tf.string) or uint8 [H, W, 3], 'label': int32}; decoding and
augmentation happen later in the pipeline, so skipped examples are never decoded.
"""

import abc
from collections.abc import Callable
import dataclasses

import ml_collections
import tensorflow as tf

from runtime.registry import Registry

Factory = Callable[[str, ml_collections.ConfigDict], "Source"]

SOURCES: Registry[Factory] = Registry(
    "config.data.source kind",
    "input_pipeline.sources.register_source",
    {
        "digits": "input_pipeline.digits:from_config",
        "tfds": "input_pipeline.tfds_source:from_config",
        "folder": "input_pipeline.folder:from_config",
        "regions": "detection.regions:from_config",
        "multibox": "detection.multibox_records:from_config",
    },
)
# What the argument after 'kind:' is, for error messages; None: the kind takes none.
_ARGUMENTS = {
    "digits": None,
    "tfds": "<dataset name>",
    "folder": "<root directory>",
    "regions": "<region record directory>",
    "multibox": "<MultiBox record directory>",
}


@dataclasses.dataclass(frozen=True)
class Shard:
  """This process's part of one split.

  ordered: builds the examples in a fixed order (evaluation, caching).
  shuffled: builds one epoch in the order chosen by an int64 [2] seed tensor. Only TensorFlow
    ops, because the training pipeline calls it inside `flat_map`, once per epoch.
  global_index: maps an example's position in `ordered()` (an int64 tensor) to its position
    in the whole split as one process reads it, so results gathered from several processes
    can be put back in that order (`sharding.strided_index` for strided shards).
  """

  num_examples: int
  ordered: Callable[[], tf.data.Dataset]
  shuffled: Callable[[tf.Tensor], tf.data.Dataset]
  global_index: Callable[[tf.Tensor], tf.Tensor] = lambda position: position


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


def buffer_shuffled(
    ordered: Callable[[], tf.data.Dataset], buffer_size: int
) -> Callable[[tf.Tensor], tf.data.Dataset]:
  """Epochs for sources without random access: a seeded shuffle buffer over the stream."""

  def shuffled(seed):
    return ordered().shuffle(buffer_size, seed=scalar_seed(seed), reshuffle_each_iteration=False)

  return shuffled


def register_source(kind: str, factory: Factory | str, argument: str | None = "<argument>") -> None:
  """Makes `config.data.source='<kind>:<argument>'` build `factory(argument, data_config)`.

  `factory` may be a "module:function" string, imported on first use. `argument` describes
  what follows 'kind:' in error messages; None for a kind that takes no argument.
  """
  SOURCES.register(kind, factory)
  _ARGUMENTS[kind] = argument


def parse_source(source: str) -> tuple[str, str]:
  """'tfds:imagenet2012' -> ('tfds', 'imagenet2012'); 'digits' -> ('digits', '')."""
  kind, _, argument = source.partition(":")
  if kind in SOURCES and bool(argument) == (_ARGUMENTS[kind] is not None):
    return kind, argument
  forms = ", ".join(
      repr(name if _ARGUMENTS[name] is None else f"{name}:{_ARGUMENTS[name]}")
      for name in SOURCES.names()
  )
  raise ValueError(f"config.data.source={source!r}: expected one of {forms}")


def get_source(config: ml_collections.ConfigDict) -> Source:
  """The source named by config.data.source (a `data` section)."""
  kind, argument = parse_source(config.source)
  return SOURCES.get(kind)(argument, config)
