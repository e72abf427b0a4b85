"""Assembly of the training and evaluation tf.data pipelines from a source and the config.

Training (per process): epochs of this host's shard, each in an order fixed by (seed, process,
epoch) -> skip to the resume point -> per-example seed (seed, process, example counter) ->
decode + Inception crop + distortions in a parallel map -> batch (drop_remainder) -> prefetch.
Because the order and every random choice are functions of the seed and the example's position
in the stream, `start_step=k` reproduces exactly the batches k, k+1, ... of a fresh run, and
the skipped examples are only read, never decoded (whole epochs are not even read).
With `data.train_order='global'` the shard is the whole split, the seeds do not involve the
process, the counter is the position in the global stream, and each process keeps only its
rows of every global batch before decoding: the global batches do not depend on how many
processes share them.

Evaluation (per process): fixed order -> decode -> views -> mask True, then mask-False padding
to the same number of batches on every process (big_vision's exact evaluation).
"""

import ml_collections
import tensorflow as tf

from input_pipeline import config as config_lib
from input_pipeline import decode, eval_preprocess, preprocess, sharding, sources
from input_pipeline.traced import as_written

# Purposes folded into the seed so that shuffling and augmentation draw independent streams.
_SHUFFLE_STREAM = 1
_AUGMENT_STREAM = 2
_MAX_EPOCHS = 2**62


def num_examples(data_config: ml_collections.ConfigDict, split: str) -> int:
  """Examples in the whole split (all processes together)."""
  return sources.get_source(data_config).num_examples(split)


def num_classes(data_config: ml_collections.ConfigDict) -> int:
  return sources.get_source(data_config).num_classes


def _stream_seed(seed: int, process_index: int, purpose: int) -> tf.Tensor:
  """int64 [2] seed of one process's shuffle or augmentation stream."""
  base = tf.constant([seed, process_index], tf.int64)
  return tf.random.experimental.stateless_fold_in(base, purpose)


def create_train_dataset(
    data_config: ml_collections.ConfigDict,
    global_batch_size: int,
    *,
    seed: int | None = None,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> tf.data.Dataset:
  """Endless per-host batches {'image': float32 [B, S, S, 3], 'label': int32 [B]}.

  Args:
    data_config: the `data` section (see `default_data_config`).
    global_batch_size: examples per step over all processes; B = global / process_count.
    seed: overrides data_config.seed.
    start_step: number of steps already trained; the stream continues where that run was.
    process_index, process_count: default to JAX's; explicit values simulate other hosts.
  """
  config_lib.validate_data_config(data_config)
  process_index, process_count = sharding.resolve_process(process_index, process_count)
  host_batch = sharding.per_host_batch_size(global_batch_size, process_count)
  seed = data_config.seed if seed is None else seed
  source = sources.get_source(data_config)
  global_order = data_config.train_order == "global"
  # In global order every process walks the stream of a single process and keeps its rows.
  stream_index, stream_count = (0, 1) if global_order else (process_index, process_count)
  stream_batch = global_batch_size if global_order else host_batch
  shard = source.shard(data_config.train_split, stream_index, stream_count)
  if shard.num_examples == 0:
    raise ValueError(
        f"split {data_config.train_split!r} of {data_config.source!r} has no "
        f"examples for process {process_index} of {process_count}"
    )

  shuffle_seed = _stream_seed(seed, stream_index, _SHUFFLE_STREAM)
  augment_seed = _stream_seed(seed, stream_index, _AUGMENT_STREAM)
  if data_config.cache:
    # Cache decoded full images, before any random choice, so every epoch re-augments them.
    decoded = (
        shard.ordered()
        .map(
            as_written(lambda example: {**example, "image": decode.decode_rgb(example["image"])}),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .cache()
    )
    epoch = sources.buffer_shuffled(lambda: decoded, data_config.shuffle_buffer)
  else:
    epoch = shard.shuffled

  first_example = start_step * stream_batch
  first_epoch, offset_in_epoch = divmod(first_example, shard.num_examples)
  examples = tf.data.Dataset.range(first_epoch, _MAX_EPOCHS).flat_map(
      as_written(
          lambda epoch_index: epoch(
              tf.random.experimental.stateless_fold_in(shuffle_seed, epoch_index)
          )
      )
  )
  examples = examples.skip(offset_in_epoch)
  positions = tf.data.Dataset.counter(first_example)
  stream = tf.data.Dataset.zip(positions, examples)
  if global_order and process_count > 1:
    # Rows [p * B, (p + 1) * B) of every global batch of G = P * B examples belong to process
    # p; make_array_from_process_local_data puts them there. Dropped before decoding.
    stream = stream.filter(
        as_written(lambda position, _: (position // host_batch) % process_count == process_index)
    )

  def augment(position, example):
    example_seed = tf.random.experimental.stateless_fold_in(augment_seed, position)
    # Other fields a source carries (MultiBox's box targets) pass through unchanged.
    return {
        **example,
        "image": preprocess.preprocess_for_train(example["image"], example_seed, data_config),
    }

  batches = stream.map(as_written(augment), num_parallel_calls=tf.data.AUTOTUNE)
  if _may_hold_corrupt_files(data_config):
    # 'header' checks cannot see corrupt image data; drop such examples with a warning rather
    # than stopping a long run (the stream stays deterministic, it only loses those examples).
    batches = batches.ignore_errors(log_warning=True)
  batches = batches.batch(host_batch, drop_remainder=True)
  return batches.prefetch(tf.data.AUTOTUNE)


def create_eval_dataset(
    data_config: ml_collections.ConfigDict,
    global_batch_size: int,
    split: str | None = None,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    view: str | eval_preprocess.ViewFunction = "center",
    with_index: bool = False,
) -> tf.data.Dataset:
  """Finite per-host batches {'image': float32 [B, S, S, 3], 'label': int32 [B], 'mask': bool [B]}.

  Every example of the split appears exactly once over all processes with mask True; the
  last batches are padded with mask False (image zeros, label 0), and every process yields
  the same number of batches, ceil(ceil(N / process_count) / B). `view` selects the evaluation
  views (see `eval_preprocess.preprocess_for_eval`); with V > 1 views per example the images
  are [B, V, S, S, 3]. `with_index` adds 'index': int32 [B], each example's position in the
  split as one process reads it (0 for padding), to restore that order over several processes.
  """
  config_lib.validate_data_config(data_config)
  split = data_config.eval_split if split is None else split
  process_index, process_count = sharding.resolve_process(process_index, process_count)
  host_batch = sharding.per_host_batch_size(global_batch_size, process_count)
  source = sources.get_source(data_config)
  num_batches = sharding.eval_batches_per_process(
      source.num_examples(split), host_batch, process_count
  )
  shard = source.shard(split, process_index, process_count)
  if shard.num_examples > num_batches * host_batch:
    raise RuntimeError(
        f"process {process_index} holds {shard.num_examples} examples of "
        f"{split!r}, more than the {num_batches} x {host_batch} every process "
        "reads; the source sharded the split unevenly."
    )

  examples = shard.ordered()
  if with_index:
    examples = examples.enumerate().map(
        as_written(
            lambda position, example: {
                **example,
                "index": tf.cast(shard.global_index(position), tf.int32),
            }
        )
    )
  examples = examples.map(
      as_written(lambda example: {**example, "image": decode.decode_rgb(example["image"])}),
      num_parallel_calls=tf.data.AUTOTUNE,
  )
  if data_config.cache:
    examples = examples.cache()
  examples = examples.map(
      as_written(
          lambda example: {
              **example,
              "image": eval_preprocess.preprocess_for_eval(example["image"], data_config, view),
          }
      ),
      num_parallel_calls=tf.data.AUTOTUNE,
  )
  # Zeros of every field (image, label and whatever else the source carries).
  padding = {name: tf.zeros(spec.shape, spec.dtype) for name, spec in examples.element_spec.items()}
  examples = sharding.pad_with_mask(examples, padding, num_batches * host_batch)
  return examples.batch(host_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _may_hold_corrupt_files(data_config: ml_collections.ConfigDict) -> bool:
  kind, _ = sources.parse_source(data_config.source)
  return (
      kind == "folder" and data_config.folder_check == "header" and data_config.on_corrupt == "skip"
  )
