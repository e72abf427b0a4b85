"""Matching a published file's tensors to a GoogLeNet variable tree, for every weight source.

A source module (torchvision_weights.py, caffe_weights.py, slim_weights.py) describes its file
as a layout: one `Tensor` per file tensor, naming where it goes in our tree and how its axes
convert. `convert` then checks every tensor by name, shape and dtype against the model's own
variable tree (from `jax.eval_shape`, nothing computed), collects every problem into one
`WeightsError` that names each tensor, and fills aux heads the file lacks from the model's own
initialiser. Pure numpy in, numpy out: reading files is the source modules' business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import dataclasses
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from inception.variants import create_model

# Shape of the dummy image for building the target tree; the tree does not depend on it (aux
# heads pool to 4x4 at 224, and adaptively elsewhere); 224 is the published resolution.
INIT_SHAPE = (1, 224, 224, 3)
AUX_HEAD_NAMES = ("aux_4a", "aux_4d")
# The aux heads flatten a 4x4 grid into their fc layer.
AUX_GRID = (4, 4)


@dataclasses.dataclass(frozen=True)
class Tensor:
  source_name: str  # as the file spells it
  collection: str  # 'params' or 'batch_stats'
  path: tuple[str, ...]  # inside the collection
  kind: str  # key of CONVERSIONS


def _conv_oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  # torch and Caffe store conv weights (out, in, kh, kw); flax nn.Conv's kernel is (kh, kw, in, out).
  return np.transpose(w, (2, 3, 1, 0))


def _linear_to_dense(w: np.ndarray) -> np.ndarray:
  # torch Linear and Caffe InnerProduct compute x @ W.T with W (out, in); flax Dense is (in, out).
  return np.transpose(w)


def _aux_fc_chw_to_dense(w: np.ndarray) -> np.ndarray:
  # torch and Caffe flatten the aux head's N x 128 x 4 x 4 map (NCHW) as (c, h, w); our AuxHead
  # flattens N x 4 x 4 x 128 (NHWC) as (h, w, c). Reorder the fc's 2048 input columns to
  # (h, w, c) while transposing to (in, out).
  out_features = w.shape[0]
  height, width = AUX_GRID
  channels = w.shape[1] // (height * width)
  w = w.reshape(out_features, channels, height, width)
  return np.transpose(w, (2, 3, 1, 0)).reshape(height * width * channels, out_features)


def _conv1x1_to_dense(w: np.ndarray) -> np.ndarray:
  # TF-slim's classifier is a 1x1 conv on the pooled 1x1 map: (1, 1, in, out) -> Dense (in, out).
  return w.reshape(w.shape[2], w.shape[3])


def _identity(w: np.ndarray) -> np.ndarray:
  return w


# Each kind: (file -> ours, shape of ours -> the shape the file must have).
CONVERSIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple], tuple]]] = {
    "conv_oihw": (_conv_oihw_to_hwio, lambda s: (s[3], s[2], s[0], s[1])),
    "conv_hwio": (_identity, lambda s: s),
    "linear": (_linear_to_dense, lambda s: (s[1], s[0])),
    "aux_fc_chw": (_aux_fc_chw_to_dense, lambda s: (s[1], s[0])),
    "conv1x1_dense": (_conv1x1_to_dense, lambda s: (1, 1, s[0], s[1])),
    "vector": (_identity, lambda s: s),
}


class WeightsError(ValueError):
  """The file does not fit the layout; `problems` lists one line per tensor."""

  def __init__(self, layout_name: str, problems: list[str], num_classes: int):
    self.problems = problems
    lines = "\n  ".join(problems)
    super().__init__(
        f"The file does not match {layout_name} (num_classes={num_classes}); "
        f"{len(problems)} problem(s):\n  {lines}"
    )


@dataclasses.dataclass
class Conversion:
  variables: dict[str, Any]  # {'params': ..., ['batch_stats': ...]} of float32 numpy arrays
  model_config: dict[str, Any]  # rebuilds the model: inception.create_model_from_config
  converted: list[str]  # file tensor names that were used
  ignored: list[str]  # file tensor names skipped on purpose (counters, dropped aux heads)
  fresh: list[str]  # our module names initialised fresh (aux heads absent from the file)


def _model(config: Mapping[str, Any]):
  fields = {k: v for k, v in config.items() if k not in ("name", "variant")}
  return create_model(config["variant"], **fields)


def target_tree(config: Mapping[str, Any]) -> dict[str, Any]:
  """Shapes of the model's variables, from `jax.eval_shape` (nothing is computed)."""
  model = _model(config)
  return jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0)}, jnp.zeros(INIT_SHAPE), train=False)
  )


def fresh_aux_heads(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
  """The aux heads' variables exactly as `model.init` with `jax.random.key(seed)` makes them.

  Only the aux subtrees are returned from the jitted init, so XLA drops the forward pass and the
  rest of the initialisers: this compiles in about a second instead of a full init's ~10 s.
  """
  model = _model(config)

  def init_aux_only():
    variables = model.init({"params": jax.random.key(seed)}, jnp.zeros(INIT_SHAPE), train=False)
    return {
        col: {name: tree[name] for name in AUX_HEAD_NAMES if name in tree}
        for col, tree in variables.items()
    }

  return jax.tree.map(np.asarray, jax.jit(init_aux_only)())


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def convert(
    arrays: Mapping[str, np.ndarray],
    layout: Iterable[Tensor],
    *,
    layout_name: str,
    model_config: dict[str, Any],
    aux_layout: Iterable[Tensor] = (),
    skippable: Iterable[str] = (),
    seed: int = 0,
    adapt: Callable[[np.ndarray, tuple[int, ...]], np.ndarray] | None = None,
) -> Conversion:
  """Converts a file's tensors (name -> array) into the variables of `model_config`'s model.

  layout: every trunk tensor the file must hold; each is converted into the model's tree.
  aux_layout: the aux heads' tensors in the source's layout. When the model has aux heads
    (model_config['aux_heads']) and the file holds any of these, all are required; when it
    holds none, the heads are initialised fresh from `seed` (logged as a warning). A model
    without aux heads skips the file's aux tensors (listed in `ignored`).
  skippable: other names the file may hold that are not used (listed in `ignored`).
  adapt: optional per-source reshaping of a stored array towards the shape the layout wants
    (Caffe's legacy 4-d blobs); a value it cannot adapt is returned unchanged and reported.
  Raises WeightsError naming every missing, unexpected, mis-shaped or non-float tensor.
  """
  layout, aux_layout = list(layout), list(aux_layout)
  target = target_tree(model_config)
  num_classes = model_config["num_classes"]
  skippable = set(skippable)
  aux_heads = bool(model_config.get("aux_heads", True))
  file_has_aux = any(t.source_name in arrays for t in aux_layout)
  if aux_heads and file_has_aux:
    layout += aux_layout
  elif not aux_heads:
    skippable |= {t.source_name for t in aux_layout}
  fresh_aux = aux_heads and not file_has_aux
  expected = {t.source_name for t in layout}

  problems, converted, ignored = [], [], []
  variables: dict[str, Any] = {collection: {} for collection in target}
  for tensor in layout:
    our_shape = tuple(_get(target[tensor.collection], tensor.path).shape)
    to_ours, file_shape_of = CONVERSIONS[tensor.kind]
    want = tuple(file_shape_of(our_shape))
    if tensor.source_name not in arrays:
      problems.append(f"missing: {tensor.source_name} (expected shape {want})")
      continue
    value = np.asarray(arrays[tensor.source_name])
    if adapt is not None:
      value = adapt(value, want)
    if tuple(value.shape) != want:
      problems.append(
          f"mis-shaped: {tensor.source_name} has shape {tuple(value.shape)}, expected {want}"
      )
      continue
    if not np.issubdtype(value.dtype, np.floating):
      problems.append(
          f"wrong dtype: {tensor.source_name} is {value.dtype}, expected floating point"
      )
      continue
    _set(variables[tensor.collection], tensor.path, to_ours(value.astype(np.float32)))
    converted.append(tensor.source_name)
  for name in sorted(arrays):
    if name in expected:
      continue
    if name in skippable:
      ignored.append(name)
    else:
      problems.append(f"unexpected: {name} (shape {tuple(np.shape(arrays[name]))})")
  if problems:
    raise WeightsError(layout_name, problems, num_classes)

  fresh = []
  if fresh_aux:
    for collection, heads in fresh_aux_heads(model_config, seed).items():
      for name, subtree in heads.items():
        variables[collection][name] = subtree
    fresh = list(AUX_HEAD_NAMES)
    logging.warning(
        "The file has no aux-head tensors: aux heads %s initialised fresh (model init, seed %d).",
        fresh,
        seed,
    )

  # Guard against a layout table that drifts from the model: same tree, same shapes.
  got = jax.tree.map(lambda x: x.shape, variables)
  want_tree = jax.tree.map(lambda x: tuple(x.shape), dict(target))
  if got != want_tree:
    raise RuntimeError("Internal error: converted tree differs from the model's variables.")
  return Conversion(variables, model_config, converted, ignored, fresh)
