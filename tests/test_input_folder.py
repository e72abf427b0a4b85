"""Image-folder source: formats, corrupt files, splits, and the real hymenoptera photos."""

import io
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import input_pipeline
from input_pipeline import decode, folder, sources

HYMENOPTERA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hymenoptera"
RED = (200, 30, 40)


def solid(colour, height=40, width=56):
  return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def write(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)


def write_mixed_folder(root):
  """cat/ and dog/ with JPEG, grey JPEG, RGBA PNG, two corrupt files and a hidden file."""
  write(root / "cat" / "rgb.jpg", tf.io.encode_jpeg(solid(RED), quality=95).numpy())
  write(root / "cat" / "grey.jpg", tf.io.encode_jpeg(solid((90,) * 3)[..., :1]).numpy())
  rgba = np.concatenate([solid((10, 200, 30)), np.full((40, 56, 1), 128, np.uint8)], -1)
  write(root / "dog" / "alpha.png", tf.io.encode_png(rgba).numpy())
  write(root / "dog" / "broken.jpg", b"<html>404 Not Found</html>")
  jpeg = tf.io.encode_jpeg(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
  write(root / "dog" / "truncated.jpg", jpeg.numpy()[: len(jpeg.numpy()) // 2])
  write(root / "dog" / ".DS_Store", b"\x00\x01")


def folder_config(root, **overrides):
  config = input_pipeline.default_data_config()
  config.source = f"folder:{root}"
  config.image_size = 32
  config.folder_val_fraction = 0.0
  config.eval_split = "train"
  config.update(overrides)
  return config


def test_formats_decode_to_rgb_and_corrupt_files_are_skipped_and_logged_once(tmp_path, caplog):
  write_mixed_folder(tmp_path)
  config = folder_config(tmp_path)
  with caplog.at_level(logging.WARNING):
    assert input_pipeline.num_examples(config, "train") == 3
    assert input_pipeline.num_classes(config) == 2
    input_pipeline.create_eval_dataset(config, 4)  # same source again: no second warning
  source = sources.get_source(config)
  skipped = {Path(item.path).name: item.reason for item in source.skipped}
  assert set(skipped) == {"broken.jpg", "truncated.jpg"}
  assert "not a JPEG" in skipped["broken.jpg"] and "truncated" in skipped["truncated.jpg"]
  warnings = [r.getMessage() for r in caplog.records if "Skipping 2 of 5 files" in r.getMessage()]
  assert len(warnings) == 1
  assert str(tmp_path / "dog" / "broken.jpg") in warnings[0]
  assert str(tmp_path / "dog" / "truncated.jpg") in warnings[0]

  batch = next(input_pipeline.create_eval_dataset(config, 4).as_numpy_iterator())
  assert batch["image"].shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(batch["label"], [0, 0, 1, 0])
  np.testing.assert_array_equal(batch["mask"], [True, True, True, False])
  # Files come sorted: cat/grey.jpg, cat/rgb.jpg, dog/alpha.png. Undo imagenet normalisation.
  rgb = batch["image"] * [0.229, 0.224, 0.225] + [0.485, 0.456, 0.406]
  np.testing.assert_allclose(rgb[0, ..., 0], rgb[0, ..., 2], atol=1e-4)  # grey -> equal RGB
  np.testing.assert_allclose(rgb[1].mean((0, 1)) * 255, RED, atol=3)
  np.testing.assert_allclose(rgb[2].mean((0, 1)) * 255, (10, 200, 30), atol=3)  # alpha dropped
  np.testing.assert_array_equal(batch["image"][3], 0)  # padding


def test_corrupt_file_raises_an_error_naming_it(tmp_path):
  write_mixed_folder(tmp_path)
  with pytest.raises(folder.CorruptImageError, match=r"dog[/\\]broken\.jpg") as raised:
    input_pipeline.num_examples(folder_config(tmp_path, on_corrupt="raise"), "train")
  assert "truncated.jpg" in str(raised.value) and "on_corrupt='raise'" in str(raised.value)


def test_header_check_skips_non_images_and_truncated_files(tmp_path):
  write_mixed_folder(tmp_path)
  config = folder_config(tmp_path, folder_check="header", flip=False)
  source = sources.get_source(config)
  assert sorted(Path(item.path).name for item in source.skipped) == ["broken.jpg", "truncated.jpg"]
  batches = input_pipeline.create_train_dataset(config, 4).take(3)
  labels = np.concatenate([b["label"] for b in batches.as_numpy_iterator()])
  assert len(labels) == 12 and set(labels) <= {0, 1}
  evaluated = list(input_pipeline.create_eval_dataset(config, 4).as_numpy_iterator())
  assert sum(int(b["mask"].sum()) for b in evaluated) == 3


@pytest.mark.parametrize("check", ["header", "decode"])
def test_scan_and_decoder_agree_on_files_truncated_anywhere(tmp_path, check):
  """Every file the scan lets through decodes in the pipeline (training and evaluation);
  a JPEG or PNG cut at any point is caught by the scan."""
  rng = np.random.default_rng(1)
  jpeg = tf.io.encode_jpeg(rng.integers(0, 255, (48, 64, 3), np.uint8), quality=90).numpy()
  png = tf.io.encode_png(rng.integers(0, 255, (20, 24, 3), np.uint8)).numpy()
  cuts = {
      "jpeg": (jpeg, [3, 20, 200, 623, len(jpeg) // 2, len(jpeg) - 3, len(jpeg) - 1]),
      "png": (png, [8, 40, len(png) // 2, len(png) - 1]),
  }
  paths = []
  for kind, (data, points) in cuts.items():
    for cut in points:
      paths.append(tmp_path / "cls" / f"{kind}_{cut}.img")
      write(paths[-1], data[:cut])
  write(tmp_path / "cls" / "whole.jpg", jpeg)
  write(tmp_path / "cls" / "padded.jpg", jpeg + b"\x00" * 100)  # bytes after the end marker
  bad = folder.find_bad_images([str(p) for p in sorted((tmp_path / "cls").iterdir())], check)
  assert set(bad) == {str(p) for p in paths}, sorted(set(map(str, paths)) ^ set(bad))
  config = folder_config(tmp_path, folder_check=check)
  assert input_pipeline.num_examples(config, "train") == 2
  assert len(list(input_pipeline.create_train_dataset(config, 2).take(2))) == 2
  evaluated = list(input_pipeline.create_eval_dataset(config, 2).as_numpy_iterator())
  assert sum(int(b["mask"].sum()) for b in evaluated) == 2


def test_empty_class_folder_is_left_out_with_a_warning(tmp_path, caplog):
  pixels = tf.io.encode_png(solid((1, 2, 3), 4, 4)).numpy()
  write(tmp_path / "ant" / "a.png", pixels)
  write(tmp_path / "zebra" / "z.png", pixels)
  (tmp_path / "bee").mkdir()
  (tmp_path / "bee" / "nested").mkdir()
  with caplog.at_level(logging.WARNING):
    source = folder.ImageFolderSource(str(tmp_path), val_fraction=0.0)
  assert source.class_names == ["ant", "zebra"]
  assert [label for _, label in source.files("train")] == [0, 1]
  assert any("without any file: bee" in r.getMessage() for r in caplog.records)


def test_cmyk_jpeg_and_gif_become_rgb(tmp_path):
  image_module = pytest.importorskip("PIL.Image", reason="pillow writes the CMYK JPEG and GIF")
  buffer = io.BytesIO()
  image_module.fromarray(solid(RED)).convert("CMYK").save(buffer, "JPEG", quality=95)
  cmyk = buffer.getvalue()
  assert image_module.open(io.BytesIO(cmyk)).mode == "CMYK"
  buffer = io.BytesIO()
  image_module.fromarray(solid(RED)).save(buffer, "GIF")
  for encoded in (cmyk, buffer.getvalue()):
    pixels = decode.decode_rgb(tf.constant(encoded)).numpy()
    assert pixels.shape == (40, 56, 3)
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(0), RED, atol=4)
  # The training path takes the fused JPEG crop for CMYK too.
  cropped = decode.decode_and_crop(tf.constant(cmyk), lambda hw: tf.constant([0, 0, 8, 8]))
  np.testing.assert_allclose(cropped.numpy().reshape(-1, 3).mean(0), RED, atol=4)


def test_fraction_split_is_stratified_disjoint_and_independent_of_location(tmp_path):
  pixels = tf.io.encode_png(solid((1, 2, 3), 4, 4)).numpy()
  for root in (tmp_path / "a", tmp_path / "elsewhere" / "b"):
    for name in ("zebra", "ant"):
      for index in range(10):
        write(root / name / f"{index:02d}.png", pixels)

  def split_names(root):
    source = folder.ImageFolderSource(str(root), val_fraction=0.3)
    return {
        split: [os.path.relpath(p, root) for p, _ in source.files(split)]
        for split in ("train", "val", "all")
    }, source

  first, source = split_names(tmp_path / "a")
  second, _ = split_names(tmp_path / "elsewhere" / "b")
  assert first == second
  assert source.class_names == ["ant", "zebra"]
  val_labels = [label for _, label in source.files("validation")]
  assert sorted(val_labels) == [0, 0, 0, 1, 1, 1]
  assert not set(first["train"]) & set(first["val"])
  assert sorted(first["train"] + first["val"]) == sorted(first["all"])
  assert len(first["all"]) == 20


def test_train_and_val_subfolders_are_used_as_splits(tmp_path):
  pixels = tf.io.encode_jpeg(solid((1, 2, 3), 8, 8)).numpy()
  for split, count in (("train", 3), ("val", 2)):
    for name in ("b_class", "a_class"):
      for index in range(count):
        write(tmp_path / split / name / f"{index}.jpg", pixels)
  source = folder.ImageFolderSource(str(tmp_path), val_fraction=0.5)
  assert source.class_names == ["a_class", "b_class"]
  assert source.num_examples("train") == 6 and source.num_examples("val") == 4
  assert [label for _, label in source.files("val")] == [0, 0, 1, 1]
  write(tmp_path / "val" / "c_class" / "0.jpg", pixels)
  with pytest.raises(ValueError, match="c_class"):
    folder.ImageFolderSource(str(tmp_path))


@pytest.mark.skipif(
    not HYMENOPTERA.is_dir(),
    reason=f"shared test data not found at {HYMENOPTERA} (only in dev/CI checkouts)",
)
def test_hymenoptera_photos_train_and_eval():
  config = folder_config(HYMENOPTERA, eval_split="val")
  assert input_pipeline.num_classes(config) == 2
  assert input_pipeline.num_examples(config, "train") == 245
  assert input_pipeline.num_examples(config, "val") == 153
  source = sources.get_source(config)
  assert source.class_names == ["ants", "bees"]
  # The GIF placeholder is a valid (if useless) image: decoded as RGB, not dropped.
  assert source.skipped == ()
  gif = [path for path, _ in source.files("train") if path.endswith(".gif")]
  assert len(gif) == 1
  assert decode.decode_rgb(tf.io.read_file(gif[0])).shape == (300, 300, 3)

  train = next(input_pipeline.create_train_dataset(config, 16).as_numpy_iterator())
  assert train["image"].shape == (16, 32, 32, 3) and set(train["label"]) <= {0, 1}
  assert np.isfinite(train["image"]).all() and train["image"].std() > 0.1
  batches = list(input_pipeline.create_eval_dataset(config, 64).as_numpy_iterator())
  assert len(batches) == 3
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  assert np.bincount(labels).tolist() == [70, 83]
