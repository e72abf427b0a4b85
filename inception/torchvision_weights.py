"""torchvision `googlenet` state dict -> variables of our `torchvision` GoogLeNet variant.

Pure conversion: takes a mapping of tensor name -> numpy array (no torch import here), returns
{'params', 'batch_stats'} that `create_model('torchvision', num_classes=..., aux_heads=...)`
accepts. Reading a `.pth` file and writing the export is `inception/import_weights.py`.

Strict by design: every tensor of torchvision's layout is matched by name and shape; missing,
unexpected and mis-shaped tensors are collected and reported together in one
`TorchvisionWeightsError` that names each of them. Only BatchNorm's `num_batches_tracked`
counters are skipped on purpose: flax's BatchNorm has no such state (torch uses it only when
`momentum=None`, which torchvision's GoogLeNet does not set).

Auxiliary heads: the published file (googlenet-1378be20.pth) carries `aux1.*`/`aux2.*` tensors,
but they were never trained (the weights are a TensorFlow port without aux heads; torchvision
warns "auxiliary heads in the pretrained googlenet model are NOT pretrained"). They are converted
when present; a state dict without any `aux1.*`/`aux2.*` tensor gets fresh heads from the
model's own initialiser with a fixed seed, which is logged and listed in `Conversion.fresh`.

Input convention (`transform_input`): torchvision's pretrained GoogLeNet is built with
`transform_input=True`, which maps ImageNet-normalised input x = (x01 - mean) / std back to
    x * std / 0.5 + (mean - 0.5) / 0.5 = (x01 - mean) / 0.5 + (mean - 0.5) / 0.5
                                       = (x01 - 0.5) / 0.5,
i.e. 2 * x01 - 1 per channel, independent of the ImageNet statistics. Our model has no such
field: feed it `config.data.normalization = 'unit'` (RGB in [-1, 1]) and it sees exactly what
torchvision's first conv sees. With 'imagenet' normalisation it would behave like torchvision with
`transform_input=False`, which is not how the published weights were trained.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from inception import weight_layout
from inception.weight_layout import Conversion, Tensor

VARIANT = "torchvision"
LAYOUT_NAME = "torchvision's GoogLeNet layout"
# Our inception tags in network order; torchvision spells them `inception3a`, ...
INCEPTION_TAGS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
# torchvision Inception submodules -> our branch names (the Caffe prototxt's).
INCEPTION_BRANCHES = {
    "branch1": "1x1",
    "branch2.0": "3x3_reduce",
    "branch2.1": "3x3",
    "branch3.0": "5x5_reduce",
    "branch3.1": "5x5",  # 3x3 kernels in both layouts (pytorch/vision issue 906)
    "branch4.1": "pool_proj",  # branch4.0 is the 3x3/1 max pool, which has no tensors
}
STEM = {"conv1": "conv1", "conv2": "conv2_reduce", "conv3": "conv2"}
AUX_HEADS = {"aux1": "aux_4a", "aux2": "aux_4d"}
IGNORED_SUFFIX = ".num_batches_tracked"


class TorchvisionWeightsError(weight_layout.WeightsError):
  """The state dict does not fit torchvision's layout; `problems` lists one line per tensor."""


def _basic_conv2d(torch_prefix: str, ours: tuple[str, ...]) -> Iterator[Tensor]:
  """torchvision BasicConv2d (conv without bias, BN eps 1e-3) = our ConvBlock(batch_norm=True)."""
  yield Tensor(f"{torch_prefix}.conv.weight", "params", ours + ("conv", "kernel"), "conv_oihw")
  # BN weight/bias are the affine scale/offset (params); running stats go to batch_stats.
  yield Tensor(f"{torch_prefix}.bn.weight", "params", ours + ("bn", "scale"), "vector")
  yield Tensor(f"{torch_prefix}.bn.bias", "params", ours + ("bn", "bias"), "vector")
  yield Tensor(f"{torch_prefix}.bn.running_mean", "batch_stats", ours + ("bn", "mean"), "vector")
  yield Tensor(f"{torch_prefix}.bn.running_var", "batch_stats", ours + ("bn", "var"), "vector")


def _linear(torch_prefix: str, ours: tuple[str, ...], kind: str = "linear") -> Iterator[Tensor]:
  yield Tensor(f"{torch_prefix}.weight", "params", ours + ("kernel",), kind)
  yield Tensor(f"{torch_prefix}.bias", "params", ours + ("bias",), "vector")


def _trunk_layout() -> Iterator[Tensor]:
  for torch_name, ours in STEM.items():
    yield from _basic_conv2d(torch_name, (ours,))
  for tag in INCEPTION_TAGS:
    for torch_branch, ours in INCEPTION_BRANCHES.items():
      yield from _basic_conv2d(f"inception{tag}.{torch_branch}", (f"inception_{tag}", ours))
  yield from _linear("fc", ("classifier",))


def _aux_layout() -> Iterator[Tensor]:
  for torch_name, ours in AUX_HEADS.items():
    yield from _basic_conv2d(f"{torch_name}.conv", (ours, "conv"))
    yield from _linear(f"{torch_name}.fc1", (ours, "fc"), kind="aux_fc_chw")
    yield from _linear(f"{torch_name}.fc2", (ours, "classifier"))


def model_config(num_classes: int, aux_heads: bool = True) -> dict[str, Any]:
  """The model section written next to the export (JSON-serialisable)."""
  return {"variant": VARIANT, "num_classes": int(num_classes), "aux_heads": bool(aux_heads)}


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    *,
    num_classes: int | None = None,
    aux_heads: bool = True,
    seed: int = 0,
) -> Conversion:
  """Converts torchvision GoogLeNet tensors (name -> array) to our variables.

  num_classes: defaults to the size of the file's classifier (`fc.weight`); a different value
    is reported as mis-shaped classifier tensors (replacing the head is training's business).
  aux_heads: whether the result has auxiliary heads. True: converted from `aux1.*`/`aux2.*`
    when the file has any of them (then all are required), else fresh from `seed`. False:
    the file's aux tensors are skipped (listed in `ignored`).
  Raises TorchvisionWeightsError naming every missing, unexpected or mis-shaped tensor.
  """
  arrays = {name: np.asarray(value) for name, value in state_dict.items()}
  if num_classes is None:
    fc = arrays.get("fc.weight")
    # Without a usable fc.weight the default only serves to list the remaining problems.
    num_classes = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else 1000
  layout, aux_layout = list(_trunk_layout()), list(_aux_layout())
  # BatchNorm's step counters may be present without being converted.
  counters = {
      t.source_name.rsplit(".", 1)[0] + IGNORED_SUFFIX
      for t in layout + aux_layout
      if t.source_name.endswith(".bn.weight")
  }
  try:
    return weight_layout.convert(
        arrays,
        layout,
        aux_layout=aux_layout,
        layout_name=LAYOUT_NAME,
        model_config=model_config(num_classes, aux_heads),
        skippable=counters,
        seed=seed,
    )
  except weight_layout.WeightsError as e:
    raise TorchvisionWeightsError(LAYOUT_NAME, e.problems, num_classes) from None
