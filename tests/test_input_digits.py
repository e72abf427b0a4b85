"""The embedded digits source: fixed split, shapes, labels, speed of the default path."""

import time

import numpy as np
import pytest

import input_pipeline
from input_pipeline import digits


def test_split_sizes_are_fixed_stratified_and_disjoint():
  splits = digits.digits_splits()
  assert len(splits["train"][1]) == 1437 and len(splits["test"][1]) == 360
  assert len(splits["all"][1]) == 1797
  train_counts = np.bincount(splits["train"][1], minlength=10)
  test_counts = np.bincount(splits["test"][1], minlength=10)
  assert test_counts.min() >= 35 and test_counts.max() <= 37  # stratified: 36 +- 1 per class
  np.testing.assert_array_equal(
      train_counts + test_counts, np.bincount(splits["all"][1], minlength=10)
  )
  # Disjoint and complete: the images of train and test together are exactly all images.
  combined = np.concatenate([splits["train"][0], splits["test"][0]]).reshape(1797, -1)
  assert sorted(map(bytes, combined)) == sorted(map(bytes, splits["all"][0].reshape(1797, -1)))
  assert splits["all"][0].max() == 255 and splits["all"][0].dtype == np.uint8
  # The first test images never change (a changed split would change every digits result).
  assert splits["test"][1][:10].tolist() == _first_test_labels()


def _first_test_labels():
  """Labels of the first ten test images with SPLIT_SEED 0, recorded when the split was made."""
  return [1, 4, 8, 6, 5, 9, 9, 1, 3, 2]


def test_config_facing_api_for_digits():
  config = input_pipeline.default_data_config()
  assert config.source == "digits"
  assert input_pipeline.num_classes(config) == 10
  assert input_pipeline.num_examples(config, "train") == 1437
  assert input_pipeline.num_examples(config, "test") == 360
  assert input_pipeline.num_examples(config, "validation") == 360
  with pytest.raises(ValueError, match="val_set"):
    input_pipeline.num_examples(config, "val_set")


def test_slices_of_a_split_in_tfds_notation():
  config = input_pipeline.default_data_config()
  assert input_pipeline.num_examples(config, "test[:60]") == 60
  assert input_pipeline.num_examples(config, "train[100:200]") == 100
  assert input_pipeline.num_examples(config, "validation[-10:]") == 10
  labels = [
      int(b["label"][m])
      for b in input_pipeline.create_eval_dataset(config, 8, split="test[:10]").as_numpy_iterator()
      for m in np.flatnonzero(b["mask"])
  ]
  assert labels == _first_test_labels()
  with pytest.raises(ValueError, match=r"'test\[400:\]' is empty"):
    input_pipeline.num_examples(config, "test[400:]")


def test_digits_batches_have_the_right_shapes_labels_and_pixels():
  config = input_pipeline.default_data_config()
  config.image_size = 40
  start = time.perf_counter()
  train = list(input_pipeline.create_train_dataset(config, 64).take(10).as_numpy_iterator())
  elapsed = time.perf_counter() - start
  for batch in train:
    assert batch["image"].shape == (64, 40, 40, 3) and batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32 and batch["label"].min() >= 0
    assert batch["label"].max() <= 9
  labels = np.concatenate([b["label"] for b in train])
  assert len(set(labels)) == 10  # shuffled: all classes within the first 640 examples
  assert elapsed < 20, f"digits input is too slow for minute-scale CPU training: {elapsed:.1f}s"

  config.normalization = "unit"
  evaluation = list(input_pipeline.create_eval_dataset(config, 120).as_numpy_iterator())
  assert len(evaluation) == 3 and all(b["mask"].all() for b in evaluation)
  image = evaluation[0]["image"][0]
  assert image.min() >= -1 and image.max() <= 1 and image.max() > 0.5  # ink reaches white
  np.testing.assert_array_equal(image[..., 0], image[..., 2])  # grey replicated to RGB
