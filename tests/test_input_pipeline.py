"""Pipeline assembly: exact sharded evaluation, resumable training order, batch checks, config."""

import itertools
import time

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import input_pipeline
from input_pipeline import digits, sharding
from input_pipeline.traced import as_written


def digits_config(**overrides):
  config = input_pipeline.default_data_config()
  config.image_size = 16
  config.update(overrides)
  return config


@pytest.mark.parametrize(
    "num_examples,host_batch,process_count", list(itertools.product([1, 10, 23], [1, 4], [1, 3, 5]))
)
def test_sharded_padded_eval_sees_every_example_exactly_once(
    num_examples, host_batch, process_count
):
  num_batches = sharding.eval_batches_per_process(num_examples, host_batch, process_count)
  seen, batch_counts = [], set()
  for process_index in range(process_count):
    ids = list(sharding.process_indices(num_examples, process_index, process_count))
    examples = tf.data.Dataset.from_tensor_slices(
        {"image": tf.constant(ids, tf.float32), "label": tf.constant(ids, tf.int32)}
    )
    padded = sharding.pad_with_mask(
        examples, {"image": tf.constant(0.0), "label": tf.constant(0)}, num_batches * host_batch
    )
    batches = list(padded.batch(host_batch, drop_remainder=True).as_numpy_iterator())
    batch_counts.add(len(batches))
    for batch in batches:
      seen.extend(batch["label"][batch["mask"]].tolist())
      assert (batch["label"][~batch["mask"]] == 0).all()
  assert batch_counts == {num_batches}  # every host runs the same number of steps
  assert sorted(seen) == list(range(num_examples))


def test_eval_dataset_over_simulated_processes_covers_the_split_once():
  config = digits_config()
  reference = list(input_pipeline.create_eval_dataset(config, 48).as_numpy_iterator())
  expected = sorted(bytes(image) for b in reference for image in b["image"][b["mask"]])
  assert len(expected) == 360 and len(reference) == 8  # 7 full batches and 24 real of 48

  seen, lengths = [], set()
  for process_index in range(3):
    batches = list(
        input_pipeline.create_eval_dataset(
            config, 48, process_index=process_index, process_count=3
        ).as_numpy_iterator()
    )
    lengths.add(len(batches))
    for batch in batches:
      assert batch["image"].shape == (16, 16, 16, 3)  # host batch 48 / 3
      seen.extend(bytes(image) for image in batch["image"][batch["mask"]])
  assert lengths == {8}  # ceil(ceil(360 / 3) / 16)
  assert sorted(seen) == expected


def write_image_folder(root, per_class=4):
  """root/<class>/<n>.png: small images that all differ, so each one is recognisable."""
  rng = np.random.default_rng(0)
  for name in ("a", "b", "c"):
    (root / name).mkdir(parents=True)
    for n in range(per_class):
      pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
      tf.io.write_file(str(root / name / f"{n}.png"), tf.io.encode_png(pixels))


class IndexedPatterns(tfds.core.GeneratorBasedBuilder):
  """A TFDS dataset built here, offline: 23 test images, each its own pattern. (mock_data
  would not do: it serves every sub-split of even_splits the whole split.)"""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = {
        "image": tfds.features.Image(shape=(12, 12, 3)),
        "label": tfds.features.ClassLabel(num_classes=3),
    }
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    return {"test": self._generate_examples()}

  def _generate_examples(self):
    rng = np.random.default_rng(1)
    for n in range(23):
      yield n, {"image": rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), "label": n % 3}


@pytest.mark.parametrize("source", ["digits", "folder", "tfds"])
def test_eval_index_restores_the_one_process_order_over_processes(source, tmp_path):
  """The 'index' of every example, read on 3 simulated processes, is its position in the
  1-process stream: strided shards (digits, folders) and TFDS's contiguous blocks alike."""
  config = digits_config(eval_split="test[:23]")
  if source == "folder":
    write_image_folder(tmp_path)
    config = digits_config(source=f"folder:{tmp_path}", eval_split="train")
  elif source == "tfds":
    config = digits_config(
        source="tfds:indexed_patterns", eval_split="test", data_dir=str(tmp_path)
    )
  one = list(input_pipeline.create_eval_dataset(config, 6, with_index=True).as_numpy_iterator())
  in_order = [image for b in one for image in b["image"][b["mask"]]]
  assert [i for b in one for i in b["index"][b["mask"]]] == list(range(len(in_order)))
  seen = []
  for process_index in range(3):
    for batch in input_pipeline.create_eval_dataset(
        config, 6, process_index=process_index, process_count=3, with_index=True
    ).as_numpy_iterator():
      for image, index in zip(batch["image"][batch["mask"]], batch["index"][batch["mask"]]):
        np.testing.assert_array_equal(image, in_order[index])
        seen.append(int(index))
  assert sorted(seen) == list(range(len(in_order))) and len(in_order) > 6


def test_resumed_training_continues_the_same_stream_across_epochs():
  config = digits_config()
  fresh = list(input_pipeline.create_train_dataset(config, 256).take(8).as_numpy_iterator())
  # 1437 examples per epoch: step 6 starts inside the second epoch.
  resumed = list(
      input_pipeline.create_train_dataset(config, 256, start_step=6).take(2).as_numpy_iterator()
  )
  for expected, actual in zip(fresh[6:], resumed):
    np.testing.assert_array_equal(actual["image"], expected["image"])
    np.testing.assert_array_equal(actual["label"], expected["label"])
  other_seed = next(input_pipeline.create_train_dataset(config, 256, seed=1).as_numpy_iterator())
  assert not np.array_equal(other_seed["label"], fresh[0]["label"])
  # The first epoch is a permutation of the split: its label histogram is the split's.
  first_epoch = np.concatenate([b["label"] for b in fresh])[:1437]
  split_labels = digits.digits_splits()["train"][1]
  np.testing.assert_array_equal(np.bincount(first_epoch), np.bincount(split_labels))


def test_resuming_far_ahead_skips_epochs_without_reading_them():
  config = digits_config()
  start = time.perf_counter()
  batch = next(
      input_pipeline.create_train_dataset(config, 64, start_step=1_000_000).as_numpy_iterator()
  )
  assert batch["image"].shape == (64, 16, 16, 3)
  assert time.perf_counter() - start < 5  # 64M examples = 44,500 epochs were not replayed


def test_processes_get_different_training_streams():
  config = digits_config()
  first = [
      next(
          input_pipeline.create_train_dataset(
              config, 64, process_index=index, process_count=2
          ).as_numpy_iterator()
      )
      for index in range(2)
  ]
  assert first[0]["image"].shape == (32, 16, 16, 3)
  assert not np.array_equal(first[0]["image"], first[1]["image"])


def test_cached_training_is_deterministic_and_resumable():
  config = digits_config(cache=True)
  fresh = list(input_pipeline.create_train_dataset(config, 256).take(7).as_numpy_iterator())
  resumed = next(input_pipeline.create_train_dataset(config, 256, start_step=6).as_numpy_iterator())
  np.testing.assert_array_equal(resumed["image"], fresh[6]["image"])


def test_batch_size_not_divisible_is_a_clear_error():
  with pytest.raises(ValueError, match=r"config\.batch_size=30 .* multiple of 4, e\.g\. 32"):
    input_pipeline.per_host_batch_size(30, process_count=4)
  with pytest.raises(ValueError, match=r"devices on the mesh's 'data' axis"):
    input_pipeline.per_host_batch_size(36, process_count=2, device_count=8)
  assert input_pipeline.per_host_batch_size(64, process_count=4, device_count=8) == 16
  config = digits_config()
  with pytest.raises(ValueError, match="config.batch_size=30"):
    input_pipeline.create_train_dataset(config, 30, process_index=0, process_count=4)
  with pytest.raises(ValueError, match="config.batch_size=10"):
    input_pipeline.create_eval_dataset(config, 10, process_index=1, process_count=3)


def test_default_config_is_complete_and_locked_configs_reject_unknown_keys():
  config = input_pipeline.default_data_config()
  for field in (
      "source",
      "image_size",
      "train_split",
      "eval_split",
      "data_dir",
      "folder_val_fraction",
      "shuffle_buffer",
      "cache",
      "seed",
      "crop_area_range",
      "crop_aspect_range",
      "random_interpolation",
      "flip",
      "brightness",
      "contrast",
      "saturation",
      "hue",
      "pca_lighting",
      "normalization",
      "eval_resize_ratio",
      "on_corrupt",
  ):
    assert field in config, field
  assert tuple(config.crop_area_range) == (0.08, 1.0)
  assert config.eval_resize_ratio * 224 == pytest.approx(256)
  experiment = ml_collections.ConfigDict({"data": config})
  experiment.lock()
  with pytest.raises(AttributeError):
    experiment.data.crop_ares_range = (0.5, 1.0)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("normalization", "bgr", "normalization"),
        ("on_corrupt", "ignore", "on_corrupt"),
        ("crop_area_range", (0.5, 0.2), "crop_area_range"),
        ("hue", 0.7, "hue"),
        ("source", "tfds", "source"),
    ],
)
def test_bad_config_values_name_the_field(field, value, message):
  config = digits_config()
  config[field] = value
  with pytest.raises(ValueError, match=message):
    input_pipeline.create_train_dataset(config, 8)


def test_map_functions_traced_as_written_refuse_python_branches_on_tensors():
  """Without AutoGraph a Python `if` on a tensor cannot silently take one branch."""

  def branches_on_a_tensor(x):
    return x * 2 if x > 2 else x

  with pytest.raises(TypeError, match="as a Python `bool` is not allowed"):
    tf.data.Dataset.range(5).map(as_written(branches_on_a_tensor))
  written_for_graphs = lambda x: tf.where(x > 2, x * 2, x)
  mapped = tf.data.Dataset.range(5).map(as_written(written_for_graphs))
  assert list(mapped.as_numpy_iterator()) == [0, 1, 2, 6, 8]
