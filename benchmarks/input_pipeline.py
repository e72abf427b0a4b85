"""Input-pipeline throughput: images/sec of the training and evaluation transforms.

    python -m benchmarks.input_pipeline --source=folder:/work/shared/data/hymenoptera/train \
        --batch=32

Prints one JSON line per transform, measured in steady state: the first `--warmup` batches
(tf.data start-up, thread pools, autotuning, file-system cache) are not timed. The evaluation
dataset is finite, so it is repeated to get enough batches; its padding examples are not
counted. `--split=all` (the default) uses every image of a folder, whether or not it has
train/val subfolders; for TFDS sources pass a split the dataset has, e.g. --split=train.
"""
import json
import os
import time

from absl import app
from absl import flags

import input_pipeline

flags.DEFINE_string('source', 'digits', "config.data.source: 'digits', 'tfds:<name>', "
                    "'folder:<root>'")
flags.DEFINE_string('split', 'all', 'Split to read for both transforms.')
flags.DEFINE_integer('batch', 32, 'Global batch size.')
flags.DEFINE_integer('image_size', 224, 'config.data.image_size')
flags.DEFINE_float('val_fraction', 0.2, 'config.data.folder_val_fraction (ignored for '
                   "--split=all)")
flags.DEFINE_boolean('cache', False, 'config.data.cache')
flags.DEFINE_integer('warmup', 3, 'Batches read before timing starts.')
flags.DEFINE_integer('batches', 20, 'Timed batches per transform.')
flags.DEFINE_list('transforms', ['train', 'eval'], 'Which transforms to measure.')
flags.DEFINE_string('data_dir', None, 'config.data.data_dir (TFDS)')
FLAGS = flags.FLAGS


def measure(batches, warmup: int, timed: int) -> tuple[float, int]:
  """(seconds, images) over `timed` batches after `warmup` untimed ones."""
  iterator = iter(batches)
  for _ in range(warmup):
    next(iterator)
  images = 0
  start = time.perf_counter()
  for _ in range(timed):
    batch = next(iterator)
    images += int(batch['mask'].sum()) if 'mask' in batch else len(batch['label'])
  return time.perf_counter() - start, images


def main(argv):
  del argv
  # Keep TensorFlow off any accelerator; this measures host-side work only.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')

  config = input_pipeline.default_data_config()
  config.source = FLAGS.source
  config.data_dir = FLAGS.data_dir
  config.image_size = FLAGS.image_size
  config.folder_val_fraction = FLAGS.val_fraction
  config.cache = FLAGS.cache
  config.train_split = FLAGS.split
  config.eval_split = FLAGS.split

  start = time.perf_counter()
  num_images = input_pipeline.num_examples(config, FLAGS.split)  # folder scan and checks
  setup_seconds = time.perf_counter() - start

  for transform in FLAGS.transforms:
    if transform == 'train':
      dataset = input_pipeline.create_train_dataset(config, FLAGS.batch)
    elif transform == 'eval':
      dataset = input_pipeline.create_eval_dataset(config, FLAGS.batch).repeat()
    else:
      raise app.UsageError(f'unknown transform {transform!r}; use train and/or eval')
    seconds, images = measure(dataset.as_numpy_iterator(), FLAGS.warmup, FLAGS.batches)
    print(json.dumps({
        'benchmark': 'input_pipeline', 'transform': transform, 'source': FLAGS.source,
        'split': FLAGS.split, 'split_images': num_images, 'batch': FLAGS.batch,
        'image_size': FLAGS.image_size, 'cache': FLAGS.cache,
        'timed_batches': FLAGS.batches, 'warmup_batches': FLAGS.warmup,
        'images_per_sec': round(images / seconds, 1),
        'ms_per_batch': round(1000 * seconds / FLAGS.batches, 1),
        'setup_sec': round(setup_seconds, 2), 'cpus': os.cpu_count(),
    }), flush=True)


if __name__ == '__main__':
  app.run(main)
