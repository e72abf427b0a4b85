"""TF-slim `inception_v1` checkpoint -> variables of our `slim` variant.

TF-slim's network (tf_slim/nets/inception_v1.py, tensorflow/models research/slim) is the same
topology as torchvision's port of it — 3x3 kernels in the "5x5" branch, a 2x2/2 pool before
Mixed_5b — but computes differently, and the `slim` variant (inception/variants.py) follows it:
TensorFlow 'SAME' padding (conv1 pads 2 before and 3 after, where Caffe and torchvision pad
3 and 3), BatchNorm without a learned scale (beta, moving mean and variance only; eps 1e-3),
and a classifier that is a 1x1 conv with bias over 1001 classes, index 0 being "background".

Names map one to one: `InceptionV1/Conv2d_1a_7x7` -> `conv1`, `Conv2d_2b_1x1` ->
`conv2_reduce`, `Conv2d_2c_3x3` -> `conv2`, `Mixed_3b` .. `Mixed_5c` -> `inception_3a` ..
`inception_5b` (TF-slim names blocks after the grid-size stage they end), `Branch_0..3` -> the
six branch convs, `Logits/Conv2d_0c_1x1` -> `classifier`. Conv kernels are stored HWIO, as in
flax. slim's Mixed_5b spells its second "5x5" conv `Conv2d_0a_3x3` (every other block says
`Conv2d_0b_3x3`); the layout follows the file.

Background class: with `keep_background=False` (the default) the classifier's first column is
dropped, so the 1000 remaining classes are ImageNet's in the usual synset order — the label
order of TFDS `imagenet2012` — and evaluation needs no label shift.

Input convention: slim's inception preprocessing feeds RGB in [-1, 1], our
`config.data.normalization = 'unit'`. The published checkpoint has no aux heads (TF-slim's
inception_v1 has none); a model with aux heads gets fresh ones from its own initialiser.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from inception import weight_layout
from inception.weight_layout import Conversion, Tensor

VARIANT = "slim"
LAYOUT_NAME = "TF-slim's inception_v1 layout"
SCOPE = "InceptionV1"
STEM = {"Conv2d_1a_7x7": "conv1", "Conv2d_2b_1x1": "conv2_reduce", "Conv2d_2c_3x3": "conv2"}
MIXED = {
    "Mixed_3b": "3a",
    "Mixed_3c": "3b",
    "Mixed_4b": "4a",
    "Mixed_4c": "4b",
    "Mixed_4d": "4c",
    "Mixed_4e": "4d",
    "Mixed_4f": "4e",
    "Mixed_5b": "5a",
    "Mixed_5c": "5b",
}
BRANCHES = {
    "Branch_0/Conv2d_0a_1x1": "1x1",
    "Branch_1/Conv2d_0a_1x1": "3x3_reduce",
    "Branch_1/Conv2d_0b_3x3": "3x3",
    "Branch_2/Conv2d_0a_1x1": "5x5_reduce",
    "Branch_2/Conv2d_0b_3x3": "5x5",
    "Branch_3/Conv2d_0b_1x1": "pool_proj",  # Branch_3/MaxPool_0a_3x3 has no variables
}
# The one block whose scope name breaks the pattern (tf_slim/nets/inception_v1.py).
BRANCH_RENAMES = {("Mixed_5b", "Branch_2/Conv2d_0b_3x3"): "Branch_2/Conv2d_0a_3x3"}
LOGITS = f"{SCOPE}/Logits/Conv2d_0c_1x1"
BACKGROUND_CLASSES = 1001
# Training state a checkpoint may also hold; never part of the model.
_NON_MODEL_SUFFIXES = (
    "/ExponentialMovingAverage",
    "/Momentum",
    "/RMSProp",
    "/RMSProp_1",
    "/Adam",
    "/Adam_1",
)
_NON_MODEL_NAMES = ("global_step", "beta1_power", "beta2_power")


class SlimCheckpointError(ValueError):
  """The checkpoint cannot be read or does not hold TF-slim's inception_v1."""


def _conv_bn(scope: str, ours: tuple[str, ...]) -> Iterator[Tensor]:
  """slim conv2d + batch_norm(scale=False): no conv bias, no BN gamma."""
  prefix = f"{SCOPE}/{scope}"
  yield Tensor(f"{prefix}/weights", "params", ours + ("conv", "kernel"), "conv_hwio")
  yield Tensor(f"{prefix}/BatchNorm/beta", "params", ours + ("bn", "bias"), "vector")
  yield Tensor(f"{prefix}/BatchNorm/moving_mean", "batch_stats", ours + ("bn", "mean"), "vector")
  yield Tensor(f"{prefix}/BatchNorm/moving_variance", "batch_stats", ours + ("bn", "var"), "vector")


def layout() -> Iterator[Tensor]:
  for scope, ours in STEM.items():
    yield from _conv_bn(scope, (ours,))
  for mixed, tag in MIXED.items():
    for branch, ours in BRANCHES.items():
      branch = BRANCH_RENAMES.get((mixed, branch), branch)
      yield from _conv_bn(f"{mixed}/{branch}", (f"inception_{tag}", ours))
  yield Tensor(f"{LOGITS}/weights", "params", ("classifier", "kernel"), "conv1x1_dense")
  yield Tensor(f"{LOGITS}/biases", "params", ("classifier", "bias"), "vector")


def model_config(num_classes: int, aux_heads: bool = True) -> dict[str, Any]:
  """The model section written next to the export (JSON-serialisable)."""
  return {"variant": VARIANT, "num_classes": int(num_classes), "aux_heads": bool(aux_heads)}


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
  """name -> array of a TensorFlow checkpoint (the prefix, e.g. inception_v1.ckpt)."""
  import tensorflow as tf  # the project's input pipeline already depends on it

  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError) as e:
    raise SlimCheckpointError(
        f"Cannot read a TensorFlow checkpoint at {path} ({type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}). Pass the checkpoint prefix, e.g. "
        "inception_v1.ckpt from inception_v1_2016_08_28.tar.gz, or its directory."
    ) from e
  return {name: np.asarray(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()}


def _drop_background(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  weights = arrays.get(f"{LOGITS}/weights")
  biases = arrays.get(f"{LOGITS}/biases")
  if weights is None or biases is None:
    return arrays  # reported as missing by the layout check
  if weights.shape[-1] != BACKGROUND_CLASSES or biases.shape != (BACKGROUND_CLASSES,):
    raise SlimCheckpointError(
        f"The checkpoint's classifier has {weights.shape[-1]} classes, not TF-slim's 1001 "
        "(background + 1000): there is no background class to drop. Import it with "
        "--keep_background=true to keep its classes as they are."
    )
  return {
      **arrays,
      f"{LOGITS}/weights": weights[..., 1:],
      f"{LOGITS}/biases": biases[1:],
  }


def convert_checkpoint(
    arrays: Mapping[str, np.ndarray],
    *,
    keep_background: bool = False,
    num_classes: int | None = None,
    aux_heads: bool = True,
    seed: int = 0,
) -> Conversion:
  """Converts TF-slim inception_v1 tensors (name -> array) to `slim` variables.

  keep_background: keep all 1001 classes (index 0 = background) instead of dropping it.
  num_classes: defaults to the classifier's size (after dropping the background class).
  aux_heads: the model gets aux heads, always fresh from `seed` (the file has none).
  Raises weight_layout.WeightsError naming every missing, unexpected or mis-shaped tensor.
  """
  arrays = {name: np.asarray(value) for name, value in arrays.items()}
  if not keep_background:
    arrays = _drop_background(arrays)
  if num_classes is None:
    weights = arrays.get(f"{LOGITS}/weights")
    num_classes = int(weights.shape[-1]) if weights is not None and weights.ndim == 4 else 1000
  skippable = {
      name for name in arrays if name in _NON_MODEL_NAMES or name.endswith(_NON_MODEL_SUFFIXES)
  }
  return weight_layout.convert(
      arrays,
      layout(),
      layout_name=LAYOUT_NAME,
      model_config=model_config(num_classes, aux_heads),
      skippable=skippable,
      seed=seed,
  )
