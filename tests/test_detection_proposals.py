"""Selective search: boxes inside the image, filtered, deterministic order, disk cache."""

import ml_collections
import numpy as np
import pytest

from detection import config as detection_config
from detection import proposals, synthetic

pytest.importorskip("cv2.ximgproc", reason="needs opencv-contrib-python-headless")


@pytest.fixture(scope="module")
def images():
  config = detection_config.default_detection_config().synthetic
  config.image_size = 96
  split = synthetic.SyntheticSplit(config, "test", max_images=3)
  return [split.image(i) for i in range(3)]


def test_boxes_inside_image_filtered_and_unique(images):
  image = images[0][:80]  # not square: x and y must not be swapped
  settings = proposals.ProposalSettings(superpixel_scale=1.0, min_size=20.0)
  boxes, counts = proposals.selective_search(image, settings)
  assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 5
  assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
  assert (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 80).all()
  assert (np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 20).all()
  assert len(np.unique(boxes, axis=0)) == len(boxes)
  assert counts["raw"] >= counts["after_min_size"] >= counts["after_dedup"] == counts["kept"]
  assert counts["raw"] > counts["after_min_size"]  # the size filter did something here
  capped, _ = proposals.selective_search(
      image, proposals.ProposalSettings(superpixel_scale=1.0, min_size=20.0, max_proposals=5)
  )
  np.testing.assert_array_equal(capped, boxes[:5])


def test_order_is_deterministic_across_calls(images):
  settings = proposals.ProposalSettings(superpixel_scale=1.0)
  first, _ = proposals.selective_search(images[1], settings)
  proposals.selective_search(images[2], settings)  # advances OpenCV's C rand() in between
  second, _ = proposals.selective_search(images[1], settings)
  np.testing.assert_array_equal(first, second)
  # The order is OpenCV's seeded ranking, not a sort: another seed permutes the same set.
  other, _ = proposals.selective_search(
      images[1], proposals.ProposalSettings(superpixel_scale=1.0, seed=1)
  )
  assert sorted(map(tuple, other)) == sorted(map(tuple, first))
  assert not np.array_equal(other, first)


def test_superpixel_scale_and_resizing(images):
  fine, _ = proposals.selective_search(images[0], proposals.ProposalSettings(superpixel_scale=0.5))
  coarse, _ = proposals.selective_search(
      images[0], proposals.ProposalSettings(superpixel_scale=4.0)
  )
  assert len(coarse) < len(fine)  # larger superpixels, fewer proposals (paper: doubled)
  small, _ = proposals.selective_search(images[0], proposals.ProposalSettings(max_side=48))
  assert small.max() <= 96 and small[:, 2:].max() > 48  # searched at 48 px, boxes in 96 px


def test_cache_hit_on_second_call(images, tmp_path, monkeypatch):
  calls = []
  real = proposals.selective_search
  monkeypatch.setattr(
      proposals,
      "selective_search",
      lambda image, settings: calls.append(1) or real(image, settings),
  )
  settings = proposals.ProposalSettings(superpixel_scale=1.0)
  cache = proposals.ProposalCache(str(tmp_path), settings)
  first = cache.get(images[0])
  assert (cache.hits, cache.misses, len(calls)) == (0, 1, 1)
  again = proposals.ProposalCache(str(tmp_path), settings).get(images[0].copy())  # a new run
  np.testing.assert_array_equal(first, again)
  assert len(calls) == 1
  cache.get(images[0])
  assert (cache.hits, cache.misses) == (1, 1)
  # Other pixels or other settings: a different cache entry, computed.
  cache.get(images[1])
  proposals.ProposalCache(str(tmp_path), proposals.ProposalSettings(superpixel_scale=2.0)).get(
      images[0]
  )
  assert len(calls) == 3
  assert cache.path(images[0]) != cache.path(images[1])


def test_proposal_cache_lives_in_the_workdir_unless_named(tmp_path):
  from detection import run

  config = ml_collections.ConfigDict({"detection": detection_config.default_detection_config()})
  assert run.proposal_cache_dir(config, str(tmp_path)) == str(tmp_path / "proposal_cache")
  config.detection.proposals.cache_dir = str(tmp_path / "shared")
  assert run.proposal_cache_dir(config, str(tmp_path / "w")) == str(tmp_path / "shared")
