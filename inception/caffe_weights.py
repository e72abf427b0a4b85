"""BVLC Caffe `bvlc_googlenet` weights -> variables of our `paper` variant.

The reference build (BVLC caffe models/bvlc_googlenet: deploy.prototxt, train_val.prototxt)
is the paper's network, and our `paper` variant is built to be that network, layer for layer:
LRN after pool1 and conv2, true 5x5 branches, 3x3/2 pools with Caffe's ceil rounding, the
aux heads' 5x5/3 average pool. Our layer names are the prototxt's, so the mapping is by name:
`conv1/7x7_s2` -> `conv1`, `conv2/3x3_reduce` -> `conv2_reduce`, `conv2/3x3` -> `conv2`,
`inception_4b/5x5` -> `inception_4b/5x5`, `loss1/*` and `loss2/*` (the aux heads on 4a and
4d) -> `aux_4a`, `aux_4d`, and `loss3/classifier` -> `classifier`. Each layer carries two blobs:
weights (conv (out, in, kh, kw), InnerProduct (out, in)) and bias.

Input convention: the reference build feeds BGR images in 0..255 minus the per-channel mean
(104, 117, 123) — our `config.data.normalization = 'caffe'`. conv1's kernels are imported in
the file's BGR channel order, so that normalisation is required, not optional.

The published `bvlc_googlenet.caffemodel` comes from train_val.prototxt, so it also holds the
trained aux heads (loss1/*, loss2/*); they are converted when the model has aux heads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from inception import weight_layout
from inception.weight_layout import Conversion, Tensor

VARIANT = "paper"
LAYOUT_NAME = "BVLC Caffe's bvlc_googlenet layout"
INCEPTION_TAGS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
BRANCHES = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")
STEM = {"conv1/7x7_s2": "conv1", "conv2/3x3_reduce": "conv2_reduce", "conv2/3x3": "conv2"}
AUX_HEADS = {"loss1": "aux_4a", "loss2": "aux_4d"}
CLASSIFIER = "loss3/classifier"
# A layer's blobs, in the order Caffe stores them.
BLOB_ROLES = ("weights", "bias")


def blob_name(layer: str, index: int) -> str:
  """How a blob is named in error messages and `Conversion.converted`."""
  role = BLOB_ROLES[index] if index < len(BLOB_ROLES) else f"blob {index}"
  return f"{layer} {role}"


def _layer(caffe_layer: str, ours: tuple[str, ...], kind: str) -> Iterator[Tensor]:
  yield Tensor(blob_name(caffe_layer, 0), "params", ours + ("kernel",), kind)
  yield Tensor(blob_name(caffe_layer, 1), "params", ours + ("bias",), "vector")


def _trunk_layout() -> Iterator[Tensor]:
  for caffe_name, ours in STEM.items():
    yield from _layer(caffe_name, (ours, "conv"), "conv_oihw")
  for tag in INCEPTION_TAGS:
    for branch in BRANCHES:
      name = f"inception_{tag}"
      yield from _layer(f"{name}/{branch}", (name, branch, "conv"), "conv_oihw")
  yield from _layer(CLASSIFIER, ("classifier",), "linear")


def _aux_layout() -> Iterator[Tensor]:
  for caffe_name, ours in AUX_HEADS.items():
    yield from _layer(f"{caffe_name}/conv", (ours, "conv", "conv"), "conv_oihw")
    # loss1/fc flattens the 128 x 4 x 4 map in Caffe's (c, h, w) order, like torch.
    yield from _layer(f"{caffe_name}/fc", (ours, "fc"), "aux_fc_chw")
    yield from _layer(f"{caffe_name}/classifier", (ours, "classifier"), "linear")


def model_config(num_classes: int, aux_heads: bool = True) -> dict[str, Any]:
  """The model section written next to the export (JSON-serialisable)."""
  return {"variant": VARIANT, "num_classes": int(num_classes), "aux_heads": bool(aux_heads)}


def _adapt_legacy_shape(value: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
  """V1 caffemodels store InnerProduct weights as (1, 1, out, in) and biases as (1, 1, 1, n)."""
  if value.shape == want or value.size != int(np.prod(want)):
    return value
  leading = value.ndim - len(want)
  if leading > 0 and all(d == 1 for d in value.shape[:leading]) and value.shape[leading:] == want:
    return value.reshape(want)
  return value


def flatten_blobs(blobs: Mapping[str, Sequence[np.ndarray]]) -> dict[str, np.ndarray]:
  """layer -> [weights, bias] becomes 'layer weights' / 'layer bias' -> array."""
  return {
      blob_name(layer, index): np.asarray(array)
      for layer, arrays in blobs.items()
      for index, array in enumerate(arrays)
  }


def convert_blobs(
    blobs: Mapping[str, Sequence[np.ndarray]],
    *,
    num_classes: int | None = None,
    aux_heads: bool = True,
    seed: int = 0,
) -> Conversion:
  """Converts a caffemodel's blobs (layer name -> [weights, bias]) to `paper` variables.

  num_classes: defaults to the size of `loss3/classifier`; a different value is reported as
    mis-shaped classifier blobs.
  aux_heads: True converts loss1/loss2 when the file has them (then all are required) and
    initialises fresh heads from `seed` when it has none; False skips the file's aux blobs.
  Raises weight_layout.WeightsError naming every missing, unexpected or mis-shaped blob.
  """
  arrays = flatten_blobs(blobs)
  if num_classes is None:
    weights = arrays.get(blob_name(CLASSIFIER, 0))
    # V1 files store it (1, 1, classes, 1024).
    num_classes = int(weights.shape[-2]) if weights is not None and weights.ndim >= 2 else 1000
  return weight_layout.convert(
      arrays,
      _trunk_layout(),
      aux_layout=_aux_layout(),
      layout_name=LAYOUT_NAME,
      model_config=model_config(num_classes, aux_heads),
      seed=seed,
      adapt=_adapt_legacy_shape,
  )
