"""TFDS image-classification datasets ('tfds:imagenet2012', 'tfds:imagenette', 'tfds:cifar10').

Any TFDS dataset with an `image` Image feature and a `label` ClassLabel feature works. Images are
read with `SkipDecoding`, so the pipeline receives the stored JPEG/PNG bytes and can use the
fused decode-and-crop for training (flax examples/imagenet, big_vision). Each process reads its
own slice of the split via `tfds.even_splits`, which is what `tfds.split_for_jax_process` does,
with the process index passed explicitly so tests can simulate several hosts.
"""

import difflib

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import sources
from input_pipeline.traced import as_written

# Files the manual-download datasets need in <data_dir>/downloads/manual.
MANUAL_FILES = {
    "imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"),
}


class TfdsSource(sources.Source):
  """One TFDS dataset; split names are the dataset's own ('train', 'validation', 'test', ...)."""

  def __init__(self, name: str, data_dir, shuffle_buffer: int):
    self._name = name
    self._shuffle_buffer = shuffle_buffer
    try:
      self._builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
      # TFDS's own message lists every dataset it knows, some hundreds of lines.
      closest = difflib.get_close_matches(name.split(":")[0], tfds.list_builders(), n=3)
      hint = f" Closest names: {', '.join(closest)}." if closest else ""
      raise ValueError(
          f"config.data.source='tfds:{name}': TFDS has no dataset {name.split(':')[0]!r}.{hint} "
          '`python -c "import tensorflow_datasets as tfds; print(tfds.list_builders())"` '
          "lists them all."
      ) from None
    self._prepared = False
    features = self._builder.info.features
    if not (
        "image" in features
        and isinstance(features["image"], tfds.features.Image)
        and "label" in features
        and isinstance(features["label"], tfds.features.ClassLabel)
    ):
      raise ValueError(
          f"config.data.source='tfds:{name}': an image-classification dataset needs an 'image' "
          f"Image feature and a 'label' ClassLabel feature; {name} has {features}"
      )

  @property
  def num_classes(self) -> int:
    return self._builder.info.features["label"].num_classes

  def num_examples(self, split: str) -> int:
    self._prepare()
    try:
      return self._builder.info.splits[split].num_examples
    except (KeyError, ValueError):
      # Split metadata is absent when the builder runs from code alone (e.g. under
      # tfds.testing.mock_data); the dataset's cardinality is still known then.
      return _count(self._read(split))

  def shard(self, split: str, process_index: int, process_count: int) -> sources.Shard:
    self._prepare()
    process_splits = tfds.even_splits(split, n=process_count)
    # even_splits gives contiguous blocks: this one starts after the earlier processes' blocks.
    start = sum(_count(self._read(earlier)) for earlier in process_splits[:process_index])

    # Built once, outside any traced function: the training pipeline re-reads the same
    # stream every epoch from inside flat_map.
    stream = self._read(process_splits[process_index])

    def ordered():
      return stream

    return sources.Shard(
        num_examples=_count(stream),
        ordered=ordered,
        shuffled=sources.buffer_shuffled(ordered, self._shuffle_buffer),
        global_index=lambda position: start + position,
    )

  def _read(self, split) -> tf.data.Dataset:
    # shuffle_files=False: a fixed file order makes the stream, and hence a resumed run,
    # deterministic; TFDS shuffled the examples across files when it wrote them, and the
    # training pipeline adds a seeded shuffle buffer on top.
    dataset = self._builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    return dataset.map(
        as_written(
            lambda example: {
                "image": example["image"],
                "label": tf.cast(example["label"], tf.int32),
            }
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )

  def _prepare(self) -> None:
    """Downloads and prepares the dataset once, or says exactly what is missing."""
    if self._prepared or self._builder.is_prepared():
      self._prepared = True
      return
    try:
      self._builder.download_and_prepare()
    except Exception as error:
      raise FileNotFoundError(self._missing_data_message(error)) from error
    self._prepared = True

  def _missing_data_message(self, error: Exception) -> str:
    data_dir = self._builder.data_dir_root
    manual_dir = data_dir / "downloads" / "manual"
    base_name = self._name.split("/")[0].split(":")[0]
    if base_name in MANUAL_FILES or getattr(self._builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
      files = MANUAL_FILES.get(base_name)
      wanted = (
          " and ".join(files)
          if files
          else f"the files described by TFDS: {self._builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
      )
      return (
          f"TFDS dataset {self._name!r} is not prepared in {data_dir} and must be downloaded "
          f"by hand: put {wanted} in {manual_dir} (set config.data.data_dir to use another "
          f"data directory), then run again; TFDS extracts and prepares it once. "
          f"Preparing failed with: {type(error).__name__}: {error}"
      )
    return (
        f"TFDS dataset {self._name!r} is not prepared in {data_dir} and could not be "
        f"downloaded ({type(error).__name__}: {error}). Prepare it where there is internet "
        f"access (`tfds build {self._name} --data_dir=DIR`) and copy DIR here, or point "
        "config.data.data_dir at an existing TFDS data directory."
    )


def _count(dataset: tf.data.Dataset) -> int:
  """Examples in a finite dataset; cardinality is known for TFDS reads, counting is a fallback."""
  cardinality = int(dataset.cardinality())
  if cardinality >= 0:
    return cardinality
  return int(dataset.reduce(0, lambda count, _: count + 1))


def from_config(name: str, data_config: ml_collections.ConfigDict) -> TfdsSource:
  """The 'tfds:<name>' source (registered in sources.py). Not cached: a TFDS builder is
  cheap, and one built under tfds.testing.mock_data must not outlive the mock."""
  return TfdsSource(name, data_config.data_dir, data_config.shuffle_buffer)
