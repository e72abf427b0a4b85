"""Detection data: synthetic set, VOC folders (malformed files), TFDS voc/2007 (mocked), regions."""

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from detection import config as detection_config
from detection import datasets, regions, scoring, synthetic, voc
import input_pipeline
from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT


def synthetic_config(**overrides):
  config = detection_config.default_detection_config()
  config.synthetic.update(
      dict(num_train=6, num_test=3, image_size=64, min_size=12.0, max_size=30.0, **overrides)
  )
  return config


def test_synthetic_split_is_deterministic_and_well_formed():
  config = synthetic_config()
  split = datasets.load_split(config, "train")
  again = datasets.load_split(config, "train", max_images=2)  # a prefix: the same images
  assert len(split) == 6 and len(again) == 2 and split.class_names == synthetic.CLASS_NAMES
  np.testing.assert_array_equal(split.image(1), again.image(1))
  np.testing.assert_array_equal(split.annotations[1].boxes, again.annotations[1].boxes)
  test = datasets.load_split(config, "test")
  assert not np.array_equal(test.image(0), split.image(0))
  for index, annotation in enumerate(split.annotations):
    image = split.image(index)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert 1 <= len(annotation.boxes) <= 4
    assert (annotation.boxes[:, :2] >= 0).all() and (annotation.boxes[:, 2:] <= 64).all()
    assert (annotation.boxes[:, 2:] > annotation.boxes[:, :2]).all()
    assert set(annotation.labels.tolist()) <= {0, 1, 2}
  decoded = np.asarray(Image.open(io.BytesIO(split.encoded(0))))
  np.testing.assert_array_equal(decoded, split.image(0))
  # The box is the drawn shape's extent: its border rows/columns differ from outside.
  other_seed = datasets.load_split(synthetic_config(seed=1), "train", max_images=1)
  assert not np.array_equal(other_seed.image(0), split.image(0))


VOC_XML = """<annotation><filename>{id}.jpg</filename>
<size><width>40</width><height>30</height><depth>3</depth></size>{objects}</annotation>"""
VOC_OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult>
<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"""


KANGAROO = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "kangaroo")


def write_voc(root, images, split="test"):
  """images: {id: xml text or list of (name, difficult, box)}."""
  for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
    os.makedirs(root / sub, exist_ok=True)
  for image_id, objects in images.items():
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(
        root / "JPEGImages" / f"{image_id}.jpg"
    )
    text = (
        objects
        if isinstance(objects, str)
        else VOC_XML.format(
            id=image_id,
            objects="".join(
                VOC_OBJECT.format(name=n, difficult=int(d), box=b) for n, d, b in objects
            ),
        )
    )
    (root / "Annotations" / f"{image_id}.xml").write_text(text)
  (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(images) + "\n")


def voc_config(root, on_bad="raise"):
  config = detection_config.default_detection_config()
  config.dataset = f"voc:{root}"
  config.on_bad_annotation = on_bad
  return config


def test_voc_folder_boxes_difficult_and_clipping(tmp_path):
  write_voc(
      tmp_path,
      {
          "000001": [
              ("dog", 0, (1, 1, 10, 10)),
              ("cat", 0, (5, 5, 45, 20)),
              ("person", 1, (20, 10, 30, 30)),
          ]
      },
  )
  split = datasets.load_split(voc_config(tmp_path), "test")
  annotation = split.annotations[0]
  assert split.class_names == voc.VOC_CLASSES and (annotation.height, annotation.width) == (30, 40)
  # 1-based inclusive -> continuous: [xmin - 1, ymin - 1, xmax, ymax]; xmax 45 clipped to 40.
  np.testing.assert_array_equal(annotation.boxes, [[0, 0, 10, 10], [4, 4, 40, 20], [19, 9, 30, 30]])
  assert [voc.VOC_CLASSES[i] for i in annotation.labels] == ["dog", "cat", "person"]
  assert annotation.difficult.tolist() == [False, False, True]
  assert split.report.clipped_boxes == 1 and not split.report.skipped
  assert split.image(0).shape == (30, 40, 3)


@pytest.mark.parametrize(
    "xml,message",
    [
        ("<annotation><object><name>dog", "malformed annotation file"),
        (
            VOC_XML.format(
                id="x", objects=VOC_OBJECT.format(name="dog", difficult=0, box=(9, 9, 3, 20))
            ),
            "object 0 has an empty or inverted box",
        ),
        (
            VOC_XML.format(
                id="x", objects=VOC_OBJECT.format(name="dragon", difficult=0, box=(1, 1, 5, 5))
            ),
            "unknown class 'dragon'",
        ),
        (VOC_XML.format(id="x", objects="<object><name>dog</name></object>"), "has no <bndbox>"),
        (
            VOC_XML.format(
                id="x", objects=VOC_OBJECT.format(name="dog", difficult=0, box=(50, 1, 60, 5))
            ),
            "lies outside the 40x30 image",
        ),
    ],
)
def test_voc_malformed_annotations_name_the_file(tmp_path, xml, message):
  write_voc(tmp_path, {"good": [("dog", 0, (1, 1, 5, 5))], "bad": xml})
  with pytest.raises(datasets.AnnotationError, match=message) as error:
    datasets.load_split(voc_config(tmp_path), "test")
  assert os.path.join("Annotations", "bad.xml") in str(error.value)
  skipped = datasets.load_split(voc_config(tmp_path, "skip"), "test")
  assert len(skipped.report.skipped) == 1 and "bad.xml" in skipped.report.skipped[0]
  assert skipped.annotations[0].image_id == "good" and len(skipped.annotations[0].boxes) == 1


def test_voc_unreadable_images_are_skipped_named_and_counted(tmp_path, caplog):
  write_voc(tmp_path, {"good": [("dog", 0, (1, 1, 5, 5))], "cut": [("cat", 0, (1, 1, 5, 5))]})
  photo = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)  # not one flat run
  Image.fromarray(photo).save(tmp_path / "JPEGImages" / "cut.jpg", quality=95)
  whole = (tmp_path / "JPEGImages" / "cut.jpg").read_bytes()
  (tmp_path / "JPEGImages" / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
  # on_bad_annotation='raise': an unreadable image is no annotation error; it is skipped.
  split = datasets.load_split(voc_config(tmp_path), "test")
  assert [a.image_id for a in split.annotations] == ["good"]
  assert split.report.unreadable_images == 1
  assert "cut.jpg: unreadable image" in split.report.skipped[0]
  assert split.report.to_dict()["unreadable_images"] == 1
  datasets.log_report("voc test", split.report)
  assert "skipped 1 unreadable images" in caplog.text


@pytest.mark.skipif(not os.path.isdir(KANGAROO), reason="../shared/data/kangaroo is absent")
def test_kangaroo_truncated_photo_is_skipped():
  config = voc_config(KANGAROO)
  config.class_names = ("kangaroo",)
  split = datasets.load_split(config, "test")
  assert split.report.unreadable_images == 1 and "00090.jpg" in split.report.skipped[0]
  assert len(split) == 40  # of the 41 listed
  assert split.image(len(split) - 1).ndim == 3


def test_byte_identical_images_are_found_within_and_across_splits(tmp_path):
  write_voc(tmp_path, {"a": [], "b": []}, split="trainval")  # write_voc's images are all alike
  Image.fromarray(np.full((30, 40, 3), 7, np.uint8)).save(tmp_path / "JPEGImages" / "b.jpg")
  (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("a2\n")
  (tmp_path / "JPEGImages" / "a2.jpg").write_bytes((tmp_path / "JPEGImages" / "a.jpg").read_bytes())
  (tmp_path / "Annotations" / "a2.xml").write_text(
      (tmp_path / "Annotations" / "a.xml").read_text().replace(">a<", ">a2<")
  )
  splits = {
      "train": datasets.load_split(voc_config(tmp_path), "trainval"),
      "test": datasets.load_split(voc_config(tmp_path), "test"),
  }
  assert datasets.duplicate_images(splits) == [("train/a", "test/a2")]


@pytest.mark.skipif(not os.path.isdir(KANGAROO), reason="../shared/data/kangaroo is absent")
def test_kangaroo_duplicate_pair_is_found():
  config = voc_config(KANGAROO)
  config.class_names = ("kangaroo",)
  splits = {
      name: datasets.load_split(config, split)
      for name, split in (("train", "trainval"), ("test", "test"))
  }
  assert datasets.duplicate_images(splits) == [("train/00007", "train/00033")]


def test_voc_missing_split_list(tmp_path):
  write_voc(tmp_path, {"a": []}, split="trainval")
  with pytest.raises(FileNotFoundError, match=r"splits found: \['trainval'\]"):
    datasets.load_split(voc_config(tmp_path), "test")


def test_tfds_voc2007_under_mock_data():
  config = detection_config.default_detection_config()
  config.dataset = "tfds:voc/2007"
  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
    # Mock objects have independent random lengths per field: a malformed example.
    with pytest.raises(datasets.AnnotationError, match=r"split 'test' example 0.*boxes.*labels"):
      datasets.load_split(config, "test")
    config.on_bad_annotation = "skip"
    split = datasets.load_split(config, "test")
    assert split.class_names == voc.VOC_CLASSES
    assert len(split) == 0 and len(split.report.skipped) == 3
    # The same real example made consistent goes through the conversion to pixels.
    builder = tfds.builder("voc/2007")
    example = next(builder.as_dataset(split="test").as_numpy_iterator())
  height, width = example["image"].shape[:2]
  objects = example["objects"]
  count = min(len(objects["bbox"]), len(objects["label"]), len(objects["is_difficult"]), 4)
  bbox = np.asarray(objects["bbox"][:count])
  bbox = np.concatenate(
      [np.minimum(bbox[:, :2], bbox[:, 2:]), np.maximum(bbox[:, :2], bbox[:, 2:])], 1
  )
  bbox[0] = [-0.1, 0.2, 0.5, 1.3]  # partly outside the image: clipped and counted
  objects.update(
      bbox=bbox, label=objects["label"][:count], is_difficult=objects["is_difficult"][:count]
  )
  report = datasets.AnnotationReport()
  annotation = datasets.tfds_annotation(
      example, "mock", "raise", report, image_id="t/0", num_classes=20
  )
  expected = bbox[:, [1, 0, 3, 2]] * [width, height, width, height]
  expected[0] = [0.2 * width, 0, width, 0.5 * height]
  np.testing.assert_allclose(annotation.boxes, expected, rtol=1e-5)
  assert report.clipped_boxes == 1
  np.testing.assert_array_equal(annotation.difficult, objects["is_difficult"])


def test_label_candidates():
  settings = regions.RegionSettings(
      context_padding=2,
      fg_iou=0.5,
      bg_iou_range=(0.1, 0.5),
      fg_fraction=0.25,
      regions_per_image=8,
      include_gt_boxes=True,
      seed=0,
  )
  gt_boxes, gt_labels = np.array([[0, 0, 10, 10], [20, 0, 30, 10]]), np.array([2, 0])
  candidates = np.array(
      [
          [0, 0, 10, 10],  # IoU 1 with class 2 -> 3
          [20, 0, 30, 5],  # IoU 0.5 with class 0 -> 1
          [0, 0, 10, 4],  # IoU 0.4 -> background
          [50, 50, 60, 60],  # IoU 0 < 0.1 -> unused
          [5, 0, 25, 10],
      ]
  )  # IoU 1/3 with both -> background
  np.testing.assert_array_equal(
      regions.label_candidates(candidates, gt_boxes, gt_labels, settings), [3, 1, 0, -1, 0]
  )
  np.testing.assert_array_equal(
      regions.label_candidates(candidates, np.zeros((0, 4)), np.zeros(0), settings), [-1] * 5
  )


def jittered_proposals(split, seed=0):
  """Stand-in proposals: each ground-truth box shifted a little and a lot, plus clutter."""
  rng = np.random.default_rng(seed)
  out = []
  for annotation in split.annotations:
    boxes = [
        annotation.boxes + rng.uniform(-2, 2, annotation.boxes.shape),
        annotation.boxes + rng.uniform(-12, 12, annotation.boxes.shape),
        np.array([[0, 0, 20, 20], [30, 30, 64, 64], [0, 0, 64, 64]]),
    ]
    out.append(np.clip(np.concatenate(boxes), 0, 64).astype(np.float32))
  return out


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
  config = synthetic_config()
  directory = tmp_path_factory.mktemp("regions")
  settings = regions.RegionSettings.from_config(config.regions)
  settings = regions.RegionSettings(
      **{**settings.__dict__, "context_padding": 2, "regions_per_image": 8}
  )
  stats = {}
  for name in ("train", "test"):
    split = datasets.load_split(config, name)
    stats[name] = regions.prepare_region_split(
        split, jittered_proposals(split), str(directory / f"{name}.tfrecord"), settings
    )
  regions.write_manifest(
      str(directory), class_names=synthetic.CLASS_NAMES, settings=settings, split_stats=stats
  )
  return directory, config


def region_data_config(directory, **overrides):
  config = input_pipeline.default_data_config()
  config.update(
      dict(
          source=f"regions:{directory}",
          train_split="train",
          eval_split="test",
          image_size=16,
          normalization="unit",
          crop_area_range=(1.0, 1.0),
          crop_aspect_range=(1.0, 1.0),
          random_interpolation=False,
          flip=False,
          brightness=0.0,
          contrast=0.0,
          saturation=0.0,
          hue=0.0,
          pca_lighting=0.0,
          **overrides,
      )
  )
  return config


def test_region_source_batches_are_25_percent_foreground(region_dir):
  directory, _ = region_dir
  config = region_data_config(directory)
  assert input_pipeline.num_classes(config) == 4
  assert input_pipeline.num_examples(config, "train") == 6 * 8
  batches = list(input_pipeline.create_train_dataset(config, 16).take(7).as_numpy_iterator())
  for batch in batches:  # 2 images x 8 regions: 2 + 6 per image
    assert batch["image"].shape == (16, 16, 16, 3)
    assert (batch["label"] > 0).sum() == 4
    assert set(batch["label"].tolist()) <= {0, 1, 2, 3}
  again = list(input_pipeline.create_train_dataset(config, 16).take(7).as_numpy_iterator())
  resumed = list(
      input_pipeline.create_train_dataset(config, 16, start_step=5).take(2).as_numpy_iterator()
  )
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a["image"], b["image"])
  for a, b in zip(batches[5:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
  # Epoch 2 draws other regions than epoch 1 (the sampling seed folds in the epoch).
  assert not all(np.array_equal(batches[i]["image"], batches[i + 3]["image"]) for i in range(3))
  evaluation = list(input_pipeline.create_eval_dataset(config, 16).as_numpy_iterator())
  assert sum(int(b["mask"].sum()) for b in evaluation) == 3 * 8


def test_training_regions_equal_inference_regions(region_dir):
  # With augmentation off, every training example is bit-identical to the inference warp of
  # one of its image's candidate boxes, with that candidate's label: the classifier is trained
  # on exactly what it scores at test time.
  directory, config = region_dir
  split = datasets.load_split(config, "train")
  records = list(
      tf.data.TFRecordDataset(str(directory / "train.tfrecord"))
      .map(regions.parse_record)
      .as_numpy_iterator()
  )
  candidates = [r["boxes"] for r in records]
  batch = next(scoring.region_batches(split, candidates, 16, 2, "unit", 4096).as_numpy_iterator())
  labels = np.concatenate([r["labels"] for r in records])
  reference = batch["image"][batch["mask"]]
  data_config = region_data_config(directory)
  train = next(input_pipeline.create_train_dataset(data_config, 48).as_numpy_iterator())
  for image, label in zip(train["image"], train["label"]):
    matches = np.flatnonzero(np.all(reference == image, axis=(1, 2, 3)))
    assert len(matches) >= 1 and label in labels[matches]


def test_region_source_rejects_cache(region_dir):
  directory, _ = region_dir
  with pytest.raises(ValueError, match="cache"):
    input_pipeline.num_classes(region_data_config(directory, cache=True))


@pytest.mark.parametrize("name", ["rcnn_synthetic", "rcnn_voc2007"])
def test_rcnn_configs_split_into_valid_training_configs(name, tmp_path):
  import importlib

  from train.config import check_config

  config = importlib.import_module(f"configs.{name}").get_config()
  detection_config.validate(config)
  train_config = detection_config.training_config(config, str(tmp_path), 2)
  check_config(train_config)  # what train_and_evaluate runs first
  assert "detection" not in train_config and "detection" in config
  assert train_config.data.source == f"regions:{tmp_path}"
  assert (train_config.seed, train_config.data.seed) == (config.seed + 2, config.data.seed + 2)


def test_detection_config_errors_name_the_field():
  from configs import rcnn_synthetic

  config = rcnn_synthetic.get_config()
  config.batch_size = 40
  with pytest.raises(ValueError, match="config.batch_size=40 must be a multiple"):
    detection_config.validate(config)
  config = rcnn_synthetic.get_config()
  with config.detection.regions.unlocked():
    config.detection.regions.contex_padding = 3
  with pytest.raises(ValueError, match="detection.regions.contex_padding"):
    detection_config.validate(config)
  config = rcnn_synthetic.get_config()
  config.detection.regions.context_padding = 24  # 2 * 24 >= 48 px regions
  with pytest.raises(ValueError, match="context_padding=24"):
    detection_config.validate(config)


def test_regions_source_resolves_in_a_process_that_never_imported_detection(region_dir):
  """main.py --config.data.source=regions:DIR: the source registers itself on first use."""
  directory, _ = region_dir
  script = (
      "import sys\n"
      "import input_pipeline\n"
      "from input_pipeline import config as data_config\n"
      "config = data_config.default_data_config()\n"
      "config.source = 'regions:' + sys.argv[1]\n"
      "config.image_size = 16\n"
      "assert 'detection.regions' not in sys.modules\n"
      "print(input_pipeline.num_classes(config), input_pipeline.num_examples(config, 'train'))\n"
  )
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
  done = subprocess.run(
      [sys.executable, "-c", script, str(directory)],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
      check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split() == ["4", str(6 * 8)]
