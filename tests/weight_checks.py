"""Comparing an imported model's outputs with its own framework's, shared by the import tests.

The criterion of every weight source: max |ours - reference| / max |reference| <= 1e-4 (float32
end to end through ~60 layers with different conv algorithms and summation orders, so bit
equality is not expected) and the same top-5 classes on every image.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT

RELATIVE_TOLERANCE = 1e-4


def relative_difference(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  assert ours.shape == reference.shape, (ours.shape, reference.shape)
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


def top5(logits) -> list[set[int]]:
  return [set(np.argsort(-row)[:5].tolist()) for row in np.asarray(logits)]


def matches(ours, reference) -> bool:
  return relative_difference(ours, reference) <= RELATIVE_TOLERANCE and top5(ours) == top5(
      reference
  )


def assert_matches(ours, reference, what: str) -> None:
  difference = relative_difference(ours, reference)
  assert difference <= RELATIVE_TOLERANCE, f"{what}: max |diff| / max |ref| = {difference:.2e}"
  assert top5(ours) == top5(reference), f"{what}: top-5 classes differ"


def probe_images(size: int, low: float, high: float, seed: int = 0) -> np.ndarray:
  """Two NHWC images in [low, high] that a network must tell apart: noise and smooth waves.

  Two noise images are nearly the same after GoogLeNet's global average pool (their logits
  differ by ~2% of their scale); noise against a smooth pattern differs by ~25%.
  """
  rng = np.random.default_rng(seed)
  noise = rng.uniform(low, high, (size, size, 3))
  y, x = np.mgrid[0:size, 0:size] / size
  waves = np.stack([np.sin(6 * x + c) * np.cos(4 * y - c) for c in range(3)], axis=-1)
  smooth = low + (waves + 1) / 2 * (high - low)
  return np.stack([noise, smooth]).astype(np.float32)


def run_import_cli(*args: str) -> subprocess.CompletedProcess:
  """`python -m inception.import_weights ARGS` from the repository root, output captured."""
  return subprocess.run(
      [sys.executable, "-m", "inception.import_weights", *args],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
  )
