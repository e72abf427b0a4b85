"""TFDS source through the real TFDS code path, with tfds.testing.mock_data (offline)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import input_pipeline
from input_pipeline import sources

NUM_MOCK_EXAMPLES = 10


def tfds_config(name, eval_split):
  config = input_pipeline.default_data_config()
  config.source = f"tfds:{name}"
  config.eval_split = eval_split
  config.image_size = 32
  return config


# imagenet2012 stores JPEGs (fused crop path), cifar10 PNGs (generic decode path).
@pytest.mark.parametrize(
    "name,eval_split,classes",
    [
        ("imagenet2012", "validation", 1000),
        ("cifar10", "test", 10),
        ("imagenette", "validation", 10),
    ],
)
def test_mocked_tfds_dataset_trains_and_evaluates(name, eval_split, classes):
  config = tfds_config(name, eval_split)
  with tfds.testing.mock_data(
      num_examples=NUM_MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE
  ):
    assert input_pipeline.num_classes(config) == classes
    assert input_pipeline.num_examples(config, "train") == NUM_MOCK_EXAMPLES
    # Skip-decoding: the pipeline sees the stored bytes, so training can decode-and-crop.
    shard = sources.get_source(config).shard("train", 0, 1)
    assert shard.ordered().element_spec["image"].dtype == tf.string

    train = input_pipeline.create_train_dataset(config, 4).take(4)
    batches = list(train.as_numpy_iterator())
    again = list(input_pipeline.create_train_dataset(config, 4).take(4).as_numpy_iterator())
    resumed = next(input_pipeline.create_train_dataset(config, 4, start_step=3).as_numpy_iterator())
    evaluation = list(input_pipeline.create_eval_dataset(config, 4).as_numpy_iterator())

  assert len(batches) == 4  # endless: 16 examples drawn from a 10-example split
  for batch in batches:
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    assert ((batch["label"] >= 0) & (batch["label"] < classes)).all()
  for first, second in zip(batches, again):
    np.testing.assert_array_equal(first["image"], second["image"])
  np.testing.assert_array_equal(resumed["image"], batches[3]["image"])
  np.testing.assert_array_equal(resumed["label"], batches[3]["label"])

  assert len(evaluation) == 3  # 10 examples in batches of 4: 4 + 4 + 2 and 2 padding
  mask = np.concatenate([b["mask"] for b in evaluation])
  assert mask.tolist() == [True] * 10 + [False] * 2
  assert all(b["image"].shape == (4, 32, 32, 3) for b in evaluation)


def test_missing_imagenet_says_where_to_put_which_files(tmp_path):
  config = tfds_config("imagenet2012", "validation")
  config.data_dir = str(tmp_path)
  assert input_pipeline.num_classes(config) == 1000  # metadata needs no data
  with pytest.raises(FileNotFoundError) as raised:
    input_pipeline.create_eval_dataset(config, 8)
  message = str(raised.value)
  assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
  assert str(tmp_path / "downloads" / "manual") in message


def test_non_classification_dataset_is_rejected():
  config = tfds_config("mnist", "test")
  assert input_pipeline.num_classes(config) == 10
  config.source = "tfds:voc/2007"
  with pytest.raises(ValueError, match="'label' ClassLabel"):
    input_pipeline.num_classes(config)
