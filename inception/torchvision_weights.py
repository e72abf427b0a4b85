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

from collections.abc import Callable, Iterator, Mapping
import dataclasses
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from inception.variants import create_model

VARIANT = "torchvision"
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
# InceptionAux pools to 4x4 (F.adaptive_avg_pool2d) before its 1x1 conv; fc1 reads that grid.
AUX_GRID = (4, 4)
# Shape of the dummy image for building the target tree; the tree does not depend on it
# (the aux heads pool adaptively to AUX_GRID), 224 is simply the training resolution.
_INIT_SHAPE = (1, 224, 224, 3)
IGNORED_SUFFIX = ".num_batches_tracked"


class TorchvisionWeightsError(ValueError):
  """The state dict does not fit the layout; `problems` lists one line per tensor."""

  def __init__(self, problems: list[str], num_classes: int):
    self.problems = problems
    lines = "\n  ".join(problems)
    super().__init__(
        f"The state dict does not match torchvision's GoogLeNet layout "
        f"(num_classes={num_classes}); {len(problems)} problem(s):\n  {lines}"
    )


@dataclasses.dataclass
class Conversion:
  variables: dict[str, Any]  # {'params': ..., 'batch_stats': ...} of float32 numpy arrays
  model_config: dict[str, Any]  # rebuilds the model: inception.create_model_from_config
  converted: list[str]  # torch tensor names that were used
  ignored: list[str]  # torch tensor names skipped on purpose (num_batches_tracked, dropped aux)
  fresh: list[str]  # our module names initialised fresh (aux heads absent from the file)


@dataclasses.dataclass(frozen=True)
class _Tensor:
  torch_name: str
  collection: str  # 'params' or 'batch_stats'
  path: tuple[str, ...]  # inside the collection
  kind: str  # key of _CONVERSIONS


def _conv_oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  # torch Conv2d.weight is (out, in, kh, kw); flax nn.Conv's kernel is (kh, kw, in, out).
  return np.transpose(w, (2, 3, 1, 0))


def _linear_to_dense(w: np.ndarray) -> np.ndarray:
  # torch Linear computes x @ W.T with W (out, in); flax nn.Dense computes x @ kernel, (in, out).
  return np.transpose(w)


def _aux_fc1_to_dense(w: np.ndarray) -> np.ndarray:
  # InceptionAux flattens its N x 128 x 4 x 4 map (NCHW) as (c, h, w), so torch input index
  # c*16 + h*4 + w; our AuxHead flattens N x 4 x 4 x 128 (NHWC) as (h, w, c). Reorder fc1's
  # 2048 input columns to (h, w, c) while transposing to (in, out).
  out_features = w.shape[0]
  height, width = AUX_GRID
  channels = w.shape[1] // (height * width)
  w = w.reshape(out_features, channels, height, width)
  return np.transpose(w, (2, 3, 1, 0)).reshape(height * width * channels, out_features)


def _identity(w: np.ndarray) -> np.ndarray:
  return w


# Each kind: (torch -> ours, shape of ours -> the shape torch must have).
_CONVERSIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple], tuple]]] = {
    "conv": (_conv_oihw_to_hwio, lambda s: (s[3], s[2], s[0], s[1])),
    "linear": (_linear_to_dense, lambda s: (s[1], s[0])),
    "aux_fc1": (_aux_fc1_to_dense, lambda s: (s[1], s[0])),
    "vector": (_identity, lambda s: s),
}


def _basic_conv2d(torch_prefix: str, ours: tuple[str, ...]) -> Iterator[_Tensor]:
  """torchvision BasicConv2d (conv without bias, BN eps 1e-3) = our ConvBlock(batch_norm=True)."""
  yield _Tensor(f"{torch_prefix}.conv.weight", "params", ours + ("conv", "kernel"), "conv")
  # BN weight/bias are the affine scale/offset (params); running stats go to batch_stats.
  yield _Tensor(f"{torch_prefix}.bn.weight", "params", ours + ("bn", "scale"), "vector")
  yield _Tensor(f"{torch_prefix}.bn.bias", "params", ours + ("bn", "bias"), "vector")
  yield _Tensor(f"{torch_prefix}.bn.running_mean", "batch_stats", ours + ("bn", "mean"), "vector")
  yield _Tensor(f"{torch_prefix}.bn.running_var", "batch_stats", ours + ("bn", "var"), "vector")


def _linear(torch_prefix: str, ours: tuple[str, ...], kind: str = "linear") -> Iterator[_Tensor]:
  yield _Tensor(f"{torch_prefix}.weight", "params", ours + ("kernel",), kind)
  yield _Tensor(f"{torch_prefix}.bias", "params", ours + ("bias",), "vector")


def _trunk_layout() -> Iterator[_Tensor]:
  for torch_name, ours in STEM.items():
    yield from _basic_conv2d(torch_name, (ours,))
  for tag in INCEPTION_TAGS:
    for torch_branch, ours in INCEPTION_BRANCHES.items():
      yield from _basic_conv2d(f"inception{tag}.{torch_branch}", (f"inception_{tag}", ours))
  yield from _linear("fc", ("classifier",))


def _aux_layout() -> Iterator[_Tensor]:
  for torch_name, ours in AUX_HEADS.items():
    yield from _basic_conv2d(f"{torch_name}.conv", (ours, "conv"))
    yield from _linear(f"{torch_name}.fc1", (ours, "fc"), kind="aux_fc1")
    yield from _linear(f"{torch_name}.fc2", (ours, "classifier"))


def model_config(num_classes: int, aux_heads: bool = True) -> dict[str, Any]:
  """The model section written next to the export (JSON-serialisable)."""
  return {"variant": VARIANT, "num_classes": int(num_classes), "aux_heads": bool(aux_heads)}


def _model(config: Mapping[str, Any]):
  fields = {k: v for k, v in config.items() if k != "variant"}
  return create_model(config["variant"], **fields)


def _target_tree(config: Mapping[str, Any]) -> dict[str, Any]:
  """Shapes of the model's variables, from `jax.eval_shape` (nothing is computed)."""
  model = _model(config)
  return jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0)}, jnp.zeros(_INIT_SHAPE), train=False)
  )


def fresh_aux_heads(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
  """The aux heads' variables exactly as `model.init` with `jax.random.key(seed)` makes them.

  Only the aux subtrees are returned from the jitted init, so XLA drops the forward pass and the
  rest of the initialisers: this compiles in about a second instead of a full init's ~10 s.
  """
  model = _model(config)

  def init_aux_only():
    variables = model.init({"params": jax.random.key(seed)}, jnp.zeros(_INIT_SHAPE), train=False)
    return {col: {name: variables[col][name] for name in AUX_HEADS.values()} for col in variables}

  return jax.tree.map(np.asarray, jax.jit(init_aux_only)())


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


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
  config = model_config(num_classes, aux_heads)
  target = _target_tree(config)

  file_has_aux = any(name.split(".", 1)[0] in AUX_HEADS for name in arrays)
  layout = list(_trunk_layout())
  aux_layout = list(_aux_layout())
  if aux_heads and file_has_aux:
    layout += aux_layout
  expected = {t.torch_name: t for t in layout}
  # Names that may be present without being converted.
  skippable = {
      t.torch_name.rsplit(".", 1)[0] + IGNORED_SUFFIX
      for t in layout + aux_layout
      if t.torch_name.endswith(".bn.weight")
  }
  if not aux_heads:
    skippable |= {t.torch_name for t in aux_layout}

  problems, converted, ignored = [], [], []
  variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
  for tensor in layout:
    our_shape = tuple(_get(target[tensor.collection], tensor.path).shape)
    convert, torch_shape_of = _CONVERSIONS[tensor.kind]
    want = tuple(torch_shape_of(our_shape))
    if tensor.torch_name not in arrays:
      problems.append(f"missing: {tensor.torch_name} (expected shape {want})")
      continue
    value = arrays[tensor.torch_name]
    if tuple(value.shape) != want:
      problems.append(
          f"mis-shaped: {tensor.torch_name} has shape {tuple(value.shape)}, " f"expected {want}"
      )
      continue
    if not np.issubdtype(value.dtype, np.floating):
      problems.append(f"wrong dtype: {tensor.torch_name} is {value.dtype}, expected floating point")
      continue
    _set(variables[tensor.collection], tensor.path, convert(value.astype(np.float32)))
    converted.append(tensor.torch_name)
  for name in sorted(arrays):
    if name in expected:
      continue
    if name in skippable:
      ignored.append(name)
    else:
      problems.append(f"unexpected: {name} (shape {tuple(arrays[name].shape)})")
  if problems:
    raise TorchvisionWeightsError(problems, num_classes)

  fresh = []
  if aux_heads and not file_has_aux:
    fresh_variables = fresh_aux_heads(config, seed)
    for collection, heads in fresh_variables.items():
      for name, subtree in heads.items():
        variables[collection][name] = subtree
    fresh = list(AUX_HEADS.values())
    logging.warning(
        "The state dict has no aux1.*/aux2.* tensors: aux heads %s initialised "
        "fresh (model init, seed %d).",
        fresh,
        seed,
    )

  # Guard against a layout table that drifts from the model: same tree, same shapes.
  got = jax.tree.map(lambda x: x.shape, variables)
  want_tree = jax.tree.map(lambda x: tuple(x.shape), dict(target))
  if got != want_tree:
    raise RuntimeError("Internal error: converted tree differs from the model's variables.")
  return Conversion(variables, config, converted, ignored, fresh)
