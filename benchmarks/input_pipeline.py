"""Input-pipeline throughput: images/sec of the training and evaluation transforms.

    python -m benchmarks.input_pipeline --source=folder:/work/shared/data/hymenoptera/train \
        --batch=32

Prints one JSON line per transform, measured in steady state: the first `--warmup` batches
(tf.data start-up, thread pools, autotuning, file-system cache) are not timed. The evaluation
dataset is finite, so it is repeated to get enough batches; its padding examples are not
counted. `--split=all` (the default) uses every image of a folder, whether or not it has
train/val subfolders; for TFDS sources pass a split the dataset has, e.g. --split=train.

Peer comparison (training transform only, folder sources):

    python -m benchmarks.input_pipeline --source=folder:/work/shared/data/hymenoptera/train \
        --transforms=train --peer=torchvision

runs torchvision's `ImageFolder` + `RandomResizedCrop(224) + ColorJitter(0.125, 0.5, 0.5, 0.2)
+ RandomHorizontalFlip + ToTensor + Normalize(ImageNet)` through a `DataLoader` (shuffled,
drop_last, persistent workers) with `--peer_workers` worker processes (default: the number of
CPUs, which is also the size of the thread pool tf.data's AUTOTUNE uses for ours). Ours does
more per image (random interpolation method, hue in HSV, PCA lighting noise). The two are timed
in alternating blocks of `--batches` batches for `--rounds` rounds, so both see the same
machine load; one extra JSON line gives both images/sec and the ratio. torch and torchvision
are benchmark-only dependencies: pip install -r benchmarks/requirements.txt.
"""

import json
import os
import time

from absl import app, flags

# `input_pipeline` (TensorFlow) is imported in main(), after torch when --peer asks for it:
# importing torchvision's triton dependency after TensorFlow segfaults, and DataLoader worker
# processes (spawned, they re-import this module) then never load TensorFlow at all.
input_pipeline = None

flags.DEFINE_string(
    "source", "digits", "config.data.source: 'digits', 'tfds:<name>', " "'folder:<root>'"
)
flags.DEFINE_string("split", "all", "Split to read for both transforms.")
flags.DEFINE_integer("batch", 32, "Global batch size.")
flags.DEFINE_integer("image_size", 224, "config.data.image_size")
flags.DEFINE_float(
    "val_fraction", 0.2, "config.data.folder_val_fraction (ignored for " "--split=all)"
)
flags.DEFINE_boolean("cache", False, "config.data.cache")
flags.DEFINE_integer("warmup", 3, "Batches read before timing starts.")
flags.DEFINE_integer("batches", 20, "Timed batches per transform.")
flags.DEFINE_list("transforms", ["train", "eval"], "Which transforms to measure.")
flags.DEFINE_string("data_dir", None, "config.data.data_dir (TFDS)")
flags.DEFINE_enum(
    "peer",
    "none",
    ["none", "torchvision"],
    "Also time a torchvision DataLoader on the same folder (train transform).",
)
flags.DEFINE_integer("peer_workers", os.cpu_count(), "DataLoader worker processes.")
flags.DEFINE_integer("rounds", 3, "Alternating timed blocks per pipeline with --peer.")
FLAGS = flags.FLAGS


def _import_torchvision():
  """(torch, torchvision), or exit naming the install command."""
  try:
    import torch
    import torchvision
  except ImportError as error:
    raise SystemExit(
        f"--peer=torchvision needs torch and torchvision ({error}). They are benchmark-only "
        "dependencies: pip install -r benchmarks/requirements.txt"
    ) from None
  return torch, torchvision


def torchvision_train_loader(root: str, batch: int, image_size: int, workers: int):
  """torchvision's standard ImageNet training loader on an image folder."""
  torch, _ = _import_torchvision()
  from torchvision import datasets, transforms

  transform = transforms.Compose(
      [
          transforms.RandomResizedCrop(image_size),
          # Strengths as ours (input_pipeline/config.py); torch's brightness is a factor.
          transforms.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.2),
          transforms.RandomHorizontalFlip(),
          transforms.ToTensor(),
          transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
      ]
  )
  dataset = datasets.ImageFolder(root, transform=transform)
  loader = torch.utils.data.DataLoader(
      dataset,
      batch_size=batch,
      shuffle=True,
      drop_last=True,
      num_workers=workers,
      persistent_workers=workers > 0,
      # Forking a process whose TensorFlow thread pools are running is unsafe; spawned
      # workers re-import only this module, without TensorFlow (see the imports).
      multiprocessing_context="spawn" if workers > 0 else None,
  )

  def forever():
    while True:
      yield from loader

  return forever(), torch.__version__


def _torch_batches(iterator):
  for images, labels in iterator:
    yield {"image": images, "label": labels}


def compare_with_peer(config, num_images: int) -> None:
  if not FLAGS.source.startswith("folder:"):
    raise app.UsageError("--peer=torchvision needs a folder:<root> source")
  root = FLAGS.source[len("folder:") :]
  if FLAGS.split != "all":
    root = os.path.join(root, FLAGS.split)
  peer_iterator, torch_version = torchvision_train_loader(
      root, FLAGS.batch, FLAGS.image_size, FLAGS.peer_workers
  )
  peer = _torch_batches(peer_iterator)
  ours = iter(input_pipeline.create_train_dataset(config, FLAGS.batch).as_numpy_iterator())
  totals = {"ours": [0.0, 0], "peer": [0.0, 0]}
  for round_index in range(FLAGS.rounds):
    for name, iterator in (("ours", ours), ("peer", peer)):
      seconds, images = measure(iterator, FLAGS.warmup if round_index == 0 else 1, FLAGS.batches)
      totals[name][0] += seconds
      totals[name][1] += images
  ours_rate = totals["ours"][1] / totals["ours"][0]
  peer_rate = totals["peer"][1] / totals["peer"][0]
  print(
      json.dumps(
          {
              "benchmark": "input_pipeline_vs_peer",
              "transform": "train",
              "source": FLAGS.source,
              "split_images": num_images,
              "batch": FLAGS.batch,
              "image_size": FLAGS.image_size,
              "timed_batches_each": FLAGS.batches * FLAGS.rounds,
              "rounds": FLAGS.rounds,
              "images_per_sec": round(ours_rate, 1),
              "peer": "torchvision DataLoader",
              "peer_workers": FLAGS.peer_workers,
              "peer_images_per_sec": round(peer_rate, 1),
              "ratio": round(ours_rate / peer_rate, 3),
              "torch": torch_version,
              "cpus": os.cpu_count(),
              "load_avg_1min_after": round(os.getloadavg()[0], 2),
          }
      ),
      flush=True,
  )


def measure(batches, warmup: int, timed: int) -> tuple[float, int]:
  """(seconds, images) over `timed` batches after `warmup` untimed ones."""
  iterator = batches if hasattr(batches, "__next__") else iter(batches)
  for _ in range(warmup):
    next(iterator)
  images = 0
  start = time.perf_counter()
  for _ in range(timed):
    batch = next(iterator)
    images += int(batch["mask"].sum()) if "mask" in batch else len(batch["label"])
  return time.perf_counter() - start, images


def main(argv):
  del argv
  global input_pipeline
  if FLAGS.peer == "torchvision":
    _import_torchvision()  # before TensorFlow: see the note on the imports above
  import input_pipeline as pipeline_module

  input_pipeline = pipeline_module
  from runtime import process

  process.hide_accelerators_from_tensorflow()  # this measures host-side work only

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
    if transform == "train":
      dataset = input_pipeline.create_train_dataset(config, FLAGS.batch)
    elif transform == "eval":
      dataset = input_pipeline.create_eval_dataset(config, FLAGS.batch).repeat()
    else:
      raise app.UsageError(f"unknown transform {transform!r}; use train and/or eval")
    seconds, images = measure(dataset.as_numpy_iterator(), FLAGS.warmup, FLAGS.batches)
    print(
        json.dumps(
            {
                "benchmark": "input_pipeline",
                "transform": transform,
                "source": FLAGS.source,
                "split": FLAGS.split,
                "split_images": num_images,
                "batch": FLAGS.batch,
                "image_size": FLAGS.image_size,
                "cache": FLAGS.cache,
                "timed_batches": FLAGS.batches,
                "warmup_batches": FLAGS.warmup,
                "images_per_sec": round(images / seconds, 1),
                "ms_per_batch": round(1000 * seconds / FLAGS.batches, 1),
                "setup_sec": round(setup_seconds, 2),
                "cpus": os.cpu_count(),
            }
        ),
        flush=True,
    )

  if FLAGS.peer == "torchvision":
    compare_with_peer(config, num_images)


if __name__ == "__main__":
  app.run(main)
