"""Averaging over crops and models, top-1/top-5 and cost, with test-double models."""

import os

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np
import pytest
import tensorflow as tf

from configs import digits
from eval import classification, crops, report, scoring
from inception import GoogLeNetOutput
from input_pipeline import digits as digits_source
from runtime.mesh import create_data_mesh
from tests.test_eval_crops import reference_views


class PixelLinear:
  """Test double: logits = sum over pixels of image * w[h, w, c, class] + b; depends on where
  every pixel is, so a wrong, shifted or unmirrored crop changes the answer."""

  def apply(self, variables, images, train=False):
    assert not train
    logits = jnp.einsum("bhwc,hwck->bk", images, variables["w"]) + variables["b"]
    return GoogLeNetOutput(logits=logits, aux_logits=(), features=logits)


def linear_variables(seed, size, num_classes, scale):
  rng = np.random.default_rng(seed)
  return {
      "w": rng.normal(0, scale, (size, size, 3, num_classes)).astype(np.float32),
      "b": rng.normal(0, 0.5, num_classes).astype(np.float32),
  }


def numpy_logits(views, variables):
  return np.einsum("vhwc,hwck->vk", views.astype(np.float64), variables["w"]) + variables["b"]


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def pool(logits, indices, combine):
  """Hand-written pooling rules over the views `indices` of one image: [V, C] -> [C]."""
  chosen = logits[indices]
  if combine == "mean_softmax":
    return softmax(chosen).mean(0)
  if combine == "max_softmax":
    return softmax(chosen).max(0)
  return chosen.mean(0)


@pytest.mark.parametrize("combine", scoring.COMBINE_RULES)
@pytest.mark.parametrize("views_per_step", [1, 2])
def test_crop_scores_pool_each_schemes_views_on_the_mesh(combine, views_per_step):
  mesh = create_data_mesh()
  rng = np.random.default_rng(0)
  images = rng.normal(size=(8, 5, 4, 4, 3)).astype(np.float32)
  variables = linear_variables(1, 4, 7, 0.3)
  subsets = {1: [3], 10: [0, 2, 4], 144: [0, 1, 2, 3, 4]}
  weights = scoring.scheme_weights(subsets, (1, 10, 144), 5)
  sharded = jax.device_put(images, NamedSharding(mesh, PartitionSpec("data")))
  scores = np.asarray(
      scoring.crop_scores(PixelLinear(), variables, sharded, weights, combine, views_per_step)
  )
  assert scores.shape == (3, 8, 7)
  for b in range(8):
    logits = numpy_logits(images[b], variables)
    for row, scheme in enumerate((1, 10, 144)):
      np.testing.assert_allclose(
          scores[row, b], pool(logits, subsets[scheme], combine), rtol=1e-4, atol=1e-6
      )


def test_rank_models_averages_the_first_m_models():
  rng = np.random.default_rng(2)
  per_model = softmax(rng.normal(size=(3, 2, 4, 9)))
  ranked = jax.device_get(scoring.rank_models(jnp.asarray(per_model, jnp.float32), "mean_softmax"))
  for m in range(3):
    mean = per_model[: m + 1].mean(0)
    np.testing.assert_array_equal(ranked["ensemble_classes"][m], np.argsort(-mean)[..., :5])
    np.testing.assert_allclose(ranked["ensemble_scores"][m], -np.sort(-mean)[..., :5], rtol=1e-5)
    np.testing.assert_array_equal(ranked["single_classes"][m], np.argsort(-per_model[m])[..., :5])
  logits = rng.normal(size=(2, 1, 3, 6))
  ranked = jax.device_get(scoring.rank_models(jnp.asarray(logits, jnp.float32), "mean_logits"))
  np.testing.assert_allclose(
      ranked["ensemble_scores"][1], -np.sort(-softmax(logits.mean(0)))[..., :5], rtol=1e-5
  )


def rank_scores(*orders):
  """Scores 6/21, 5/21, ..., 1/21 given to the classes in each order (best first)."""
  scores = np.zeros((len(orders), 6))
  for row, order in enumerate(orders):
    scores[row, list(order)] = np.arange(6, 0, -1) / 21
  return scores


def test_hand_computed_table_cells_and_costs():
  labels = np.array([0, 1, 2, 0])
  mask = np.array([True, True, True, False])  # the last image is padding
  wrong = (5, 4, 3, 2, 1, 0)  # padding is ranked wrong everywhere: it must not count
  per_model = np.stack(
      [
          # model 0: 1 crop ranks the labels 1st, 2nd, 6th; 10 crops 1st, 1st, 3rd.
          [
              rank_scores((0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4, 5), (0, 1, 3, 4, 5, 2), wrong),
              rank_scores((0, 1, 2, 3, 4, 5), (1, 0, 2, 3, 4, 5), (1, 2, 0, 3, 4, 5), wrong),
          ],
          # model 1: 1 crop ranks them 3rd, 1st, 1st; 10 crops always 1st.
          [
              rank_scores((1, 3, 0, 2, 4, 5), (1, 2, 0, 3, 4, 5), (2, 0, 1, 4, 3, 5), wrong),
              rank_scores((0, 1, 2, 3, 4, 5), (1, 0, 2, 3, 4, 5), (2, 0, 1, 3, 4, 5), wrong),
          ],
      ]
  )
  ranked = jax.device_get(scoring.rank_models(jnp.asarray(per_model, jnp.float32), "mean_softmax"))
  tally = report.Tally(2, (1, 10), 6)
  tally.add(ranked, labels, mask)
  assert tally.count == 3
  # By hand: the two-model average of image 0 (1 crop) is (c0..c5) = (10, 11, 7, 8, 4, 2) / 42,
  # so the ensemble says class 1 and holds the label 2nd; image 1 gives (10, 11, 9, 6, 4, 2)
  # -> class 1, right; image 2 gives (11, 9, 7, 6, 6, 3) -> label 2 third.
  rows = report.table_cells(tally)
  got = [
      (
          r["num_models"],
          r["crops"],
          r["cost"],
          round(r["top1_accuracy"], 4),
          round(r["top5_error"], 4),
          r.get("best_single", False),
      )
      for r in rows
  ]
  assert got == [
      (1, 1, 1, 0.3333, 0.3333, False),
      (1, 10, 10, 0.6667, 0.0, False),
      (2, 1, 2, 0.3333, 0.0, False),
      (2, 10, 20, 1.0, 0.0, False),
      (1, 1, 1, 0.6667, 0.0, True),
      (1, 10, 10, 1.0, 0.0, True),
  ]
  assert tally.best_single_model() == 1 and rows[-1]["models"] == [1]
  table = report.markdown_table(rows, ["/runs/a", "/runs/b"])
  assert "| 2 | 10 | 20 | 100.00% | 0.00% | -33.33% | +66.67% |" in table
  assert "| best single (b) | 1 | 1 | 66.67% | 0.00% | -33.33% | +33.33% |" in table
  assert table.splitlines()[2] == "| 1 | 1 | 1 | 33.33% | 33.33% | base | base |"
  per_class = tally.cell("ensemble", 0, 1)["per_class"]
  assert per_class["count"] == [1, 1, 1, 0, 0, 0]
  assert per_class["top1_accuracy"] == [1.0, 0.0, 0.0, None, None, None]
  predictions = tally.predictions()
  assert predictions["labels"] == [0, 1, 2]
  assert predictions["by_crops"]["1"]["top5_classes"][1] == [1, 0, 2, 3, 4]
  np.testing.assert_allclose(
      predictions["by_crops"]["1"]["top5_scores"][1], np.array([11, 10, 9, 6, 4]) / 42, atol=1e-6
  )


def write_digit_folder(root, per_class, shapes=((32, 32),), split="test"):
  """The first `per_class` images of every class of a digits split as PNGs root/<class>/<j>.png,
  resized to the given shapes in turn; returns (uint8 image, label) in the folder's order.

  An image folder is how these tests evaluate a handful of digits: the digits source has no
  split slicing, and a few images keep 144-crop evaluation within the test budget.
  """
  images, labels = digits_source.digits_splits()[split]
  written = []
  for label in range(digits_source.NUM_CLASSES):
    os.makedirs(root / str(label))
    for j, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
      image = digits_source.upscale_to_rgb(images[index], 32)
      height, width = shapes[(label * per_class + j) % len(shapes)]
      if (height, width) != (32, 32):
        image = tf.cast(tf.round(tf.image.resize(image, [height, width])), tf.uint8)
      tf.io.write_file(str(root / str(label) / f"{j:02d}.png"), tf.io.encode_png(image))
      written.append((image.numpy(), label))
  return written


def folder_data_config(root):
  config = digits.get_config().data
  config.source = f"folder:{root}"
  config.folder_val_fraction = 0.0  # every image in 'train' (and 'all')
  return config


def test_evaluate_matches_numpy_over_views_models_and_schemes(tmp_path):
  """evaluate() on landscape, portrait and square digits with two linear doubles, against the
  boxes cut by numpy, a numpy forward pass and hand-written averaging (softmax over crops,
  then models), on the 8-device mesh with a padded last batch."""
  written = write_digit_folder(tmp_path, 2, shapes=((32, 32), (36, 44), (45, 34)))
  config = folder_data_config(tmp_path)
  size = config.image_size
  doubles = [
      classification.ModelToEvaluate(name, PixelLinear(), linear_variables(seed, size, 10, 0.05))
      for seed, name in ((3, "a"), (4, "b"))
  ]
  results = classification.evaluate(
      doubles, config, split="all", crops=("1", "10", "144"), batch_size=8, views_per_step=8
  )
  assert results["num_images"] == 20 and len(results["views"]) == 145

  views, subsets = crops.union_of_schemes((1, 10, 144), size, 37)
  labels = np.array([label for _, label in written])
  pooled = np.zeros((2, 3, len(labels), 10))  # [model, scheme, image, class]
  for index, (image, _) in enumerate(written):
    cut = reference_views(image, views, size) / 255.0 * 2.0 - 1.0  # 'unit' normalisation
    for m, double in enumerate(doubles):
      logits = numpy_logits(cut, double.variables)
      for row, scheme in enumerate((1, 10, 144)):
        pooled[m, row, index] = pool(logits, subsets[scheme], "mean_softmax")

  cells = {(c["kind"], tuple(c["models"]), c["crops"]): c for c in results["cells"]}
  for k, models in ((1, (0,)), (2, (0, 1))):
    ensemble = pooled[list(models)].mean(0)
    for row, scheme in enumerate((1, 10, 144)):
      cell = cells[("ensemble", models, scheme)]
      top5 = np.argsort(-ensemble[row], axis=-1)[:, :5]
      assert cell["cost"] == k * scheme and cell["count"] == 20
      assert cell["top1_accuracy"] == pytest.approx(np.mean(top5[:, 0] == labels))
      assert cell["top5_error"] == pytest.approx(1 - np.mean((top5 == labels[:, None]).any(1)))
      if k == 2:
        predicted = results["predictions"]["by_crops"][str(scheme)]
        np.testing.assert_array_equal(predicted["top5_classes"], top5)
        np.testing.assert_allclose(
            predicted["top5_scores"], np.take_along_axis(ensemble[row], top5, 1), atol=2e-5
        )
  assert results["predictions"]["labels"] == labels.tolist()
  single_b = cells[("single", (1,), 144)]
  assert single_b["top1_accuracy"] == pytest.approx(np.mean(np.argmax(pooled[1, 2], -1) == labels))


def test_default_batch_fits_the_host_budget_and_the_split():
  # 145 views of 224 px: 87 MB per image, so the 1 GiB budget holds 12, cut to the 8 devices.
  assert classification.default_batch_size(120, 145, 224, 8, num_images=50_000) == 8
  # A 20-image split is not padded to 120: one batch of 20, or of 24 on 8 devices.
  assert classification.default_batch_size(120, 145, 32, 1, num_images=20) == 20
  assert classification.default_batch_size(120, 145, 32, 8, num_images=20) == 24
  assert classification.default_batch_size(120, 1, 32, 8, num_images=5_000) == 120
