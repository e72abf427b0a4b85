"""Cost of the paper's 144-crop evaluation per image against 144 single-crop forward passes.

    python -m benchmarks.multi_crop --source=folder:/work/shared/data/hymenoptera/train

Times, in steady state and in one process, alternating:
  * 144-crop: the real evaluation path: `input_pipeline.create_eval_dataset(...,
    view=eval.multi_crop.view_function(eval.crops.multi_crop_144(S)))` (decode, 4 resizes, 144
    windows and mirrors in tf.data) feeding `eval.scoring.crop_scores` (forward passes of
    `--rows` views each, softmax, mean over the views), one image per step;
  * single crop: `model.apply(train=False).logits` on `--rows` images of S x S.
Prints one JSON line with the seconds per image of each, and
`ratio = 144-crop seconds per image / (144 x single-crop forward seconds per image)`: the
overhead of cropping, feeding and pooling (the paper's Table 3 counts the cost as crops x
models; 1.0 means no overhead). `--rows` should divide 144, else padding views are computed.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

flags.DEFINE_string("source", "folder:/work/shared/data/hymenoptera/train", "config.data.source")
flags.DEFINE_string("split", "all", "Split to evaluate.")
flags.DEFINE_string("variant", "torchvision", "Model variant.")
flags.DEFINE_integer("image_size", 224, "Crop size S.")
flags.DEFINE_integer("rows", 48, "Views (or images) per forward pass.")
flags.DEFINE_integer("images", 6, "Timed images (144-crop) per round.")
flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import numpy as np

  from runtime import process

  process.hide_accelerators_from_tensorflow()

  from eval import crops, multi_crop, scoring
  from inception import create_model
  import input_pipeline

  config = input_pipeline.default_data_config()
  config.source = FLAGS.source
  config.eval_split = FLAGS.split
  config.image_size = FLAGS.image_size
  views = crops.multi_crop_144(FLAGS.image_size)
  dataset = input_pipeline.create_eval_dataset(
      config, 1, view=multi_crop.view_function(views)
  ).repeat()
  batches = dataset.as_numpy_iterator()

  model = create_model(FLAGS.variant, num_classes=1000)
  size = FLAGS.image_size
  variables = jax.jit(
      lambda r: model.init({"params": r, "dropout": r}, jnp.zeros((1, size, size, 3)), train=False)
  )(jax.random.key(0))
  weights = jnp.full((1, len(views)), 1.0 / len(views))

  def multi_crop_step():
    batch = next(batches)
    scores = scoring.crop_scores(
        model,
        variables,
        jnp.asarray(batch["image"]),
        weights,
        "mean_softmax",
        views_per_step=FLAGS.rows,
    )
    jax.block_until_ready(scores)

  forward = jax.jit(lambda v, x: model.apply(v, x, train=False).logits)
  single = jnp.asarray(
      np.random.default_rng(0).standard_normal((FLAGS.rows, size, size, 3), np.float32)
  )

  def single_step():
    jax.block_until_ready(forward(variables, single))

  for _ in range(2):  # compile, tf.data start-up
    multi_crop_step()
    single_step()
  multi_seconds, single_seconds, multi_images, single_images = 0.0, 0.0, 0, 0
  for _ in range(FLAGS.rounds):
    start = time.perf_counter()
    for _ in range(FLAGS.images):
      multi_crop_step()
    multi_seconds += time.perf_counter() - start
    multi_images += FLAGS.images
    start = time.perf_counter()
    single_batches = max(1, FLAGS.images * len(views) // FLAGS.rows)
    for _ in range(single_batches):
      single_step()
    single_seconds += time.perf_counter() - start
    single_images += single_batches * FLAGS.rows
  per_image_144 = multi_seconds / multi_images
  per_crop = single_seconds / single_images
  print(
      json.dumps(
          {
              "benchmark": "multi_crop_144",
              "variant": FLAGS.variant,
              "source": FLAGS.source,
              "rows_per_forward": FLAGS.rows,
              "timed_images": multi_images,
              "sec_per_image_144_crops": round(per_image_144, 3),
              "sec_per_single_crop_forward": round(per_crop, 4),
              "ratio_vs_144x_single": round(per_image_144 / (len(views) * per_crop), 3),
              "device_kind": jax.devices()[0].device_kind,
              "cpus": os.cpu_count(),
              "load_avg_1min_after": round(os.getloadavg()[0], 2),
          }
      ),
      flush=True,
  )


if __name__ == "__main__":
  from runtime import launch

  launch.reexec_with_allocator_settings()  # XLA:CPU buffers without page faults
  app.run(main)
