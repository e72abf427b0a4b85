"""Table-1 style report of a GoogLeNet: shapes, channel columns, params and multiply-adds.

    python -m inception.summary --variant=paper [--image_size=224 --width=1.0 --num_classes=1000]

Everything is computed from the model itself with `jax.eval_shape` (no weights are allocated):
output sizes from captured intermediates, weights from the parameter tree, multiply-adds as
kernel size x output positions of every conv and dense layer. The paper's printed figures sit
beside the computed ones; rows where they disagree by more than 3% are flagged (docs/paper_notes.md, "Table 1 and its misprints":
conv1, 4c params and 5a are known misprints in Table 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
import dataclasses
import math
from typing import Any

from absl import app, flags
from flax.traverse_util import flatten_dict
import jax
import jax.numpy as jnp

from inception import paper
from inception.googlenet import GoogLeNet
from runtime import cli

CHANNEL_COLUMNS = ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj")
_BRANCH_CONVS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")


@dataclasses.dataclass
class LayerCost:
  weights: int = 0  # conv/dense kernels only: what Table 1 counts
  params: int = 0  # everything trainable: kernels, biases, BN scale and offset
  macs: int = 0  # multiply-adds for one image

  def __add__(self, other: LayerCost) -> LayerCost:
    return LayerCost(
        self.weights + other.weights, self.params + other.params, self.macs + other.macs
    )


@dataclasses.dataclass
class Row:
  name: str
  kind: str
  patch: str
  output: tuple[int, ...]
  depth: int
  channels: tuple[int, ...] = ()
  cost: LayerCost = dataclasses.field(default_factory=LayerCost)
  printed: paper.PrintedRow | None = None

  @property
  def flags(self) -> list[str]:
    """Which of params/ops differ from the printed figure by more than the tolerance."""
    if self.printed is None:
      return []
    flagged = []
    for label, ours, printed in (
        ("params", self.cost.weights / 1024, self.printed.params_k),
        ("ops", self.cost.macs / 1e6, self.printed.ops_m),
    ):
      if printed is not None and abs(ours - printed) > paper.FLAG_RELATIVE_TOLERANCE * printed:
        flagged.append(label)
    return flagged


@dataclasses.dataclass
class Report:
  rows: list[Row]
  aux_rows: list[Row]
  total: LayerCost  # inference network, without the auxiliary heads
  total_with_aux: LayerCost


def _shape_tree(model: GoogLeNet, image_size: int) -> dict[str, Any]:
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  return jax.eval_shape(lambda: model.init(rngs, images, train=False, capture_intermediates=True))


def _layer_costs(variables: Mapping[str, Any]) -> dict[tuple[str, ...], LayerCost]:
  """Cost of every layer that owns a kernel, keyed by its module path."""
  params = flatten_dict(variables["params"])
  outputs = flatten_dict(variables["intermediates"])
  costs: dict[tuple[str, ...], LayerCost] = {}
  for path, leaf in params.items():
    layer = path[:-1]
    cost = costs.setdefault(layer, LayerCost())
    cost.params += leaf.size
    if path[-1] == "kernel":
      output_shape = outputs[layer + ("__call__",)][0].shape
      cost.weights += leaf.size
      cost.macs += leaf.size * math.prod(output_shape[1:-1])
  return costs


def _cost_under(costs: Mapping[tuple[str, ...], LayerCost], *prefixes: str) -> LayerCost:
  total = LayerCost()
  for path, cost in costs.items():
    if path[0] in prefixes:
      total += cost
  return total


def _out_channels(params: Mapping[str, Any], *path: str) -> int:
  node = params
  for key in path:
    node = node[key]
  return node["conv"]["kernel"].shape[-1]


def build_report(model: GoogLeNet, image_size: int = 224) -> Report:
  shapes = _shape_tree(model, image_size)
  params, intermediates = shapes["params"], shapes["intermediates"]
  costs = _layer_costs(shapes)

  def out_shape(name: str) -> tuple[int, ...]:
    value = intermediates[name]
    value = value["__call__"] if isinstance(value, Mapping) else value
    return tuple(value[0].shape[1:])

  def pool_row(name: str, window: int, kind: str = "max pool") -> Row:
    return Row(name, kind, f"{window}x{window}/2", out_shape(name), 0)

  def inception_row(tag: str) -> Row:
    name = f"inception_{tag}"
    channels = tuple(_out_channels(params, name, conv) for conv in _BRANCH_CONVS)
    return Row(
        name,
        f"inception ({tag})",
        "",
        out_shape(name),
        2,
        channels,
        _cost_under(costs, name),
        paper.PRINTED[name],
    )

  rows = [
      Row(
          "conv1",
          "convolution",
          "7x7/2",
          out_shape("conv1"),
          1,
          (),
          _cost_under(costs, "conv1"),
          paper.PRINTED["conv1"],
      ),
      pool_row("pool1", 3),
      Row(
          "conv2",
          "convolution",
          "3x3/1",
          out_shape("conv2"),
          2,
          (0, _out_channels(params, "conv2_reduce"), _out_channels(params, "conv2"), 0, 0, 0),
          _cost_under(costs, "conv2_reduce", "conv2"),
          paper.PRINTED["conv2"],
      ),
      pool_row("pool2", 3),
      inception_row("3a"),
      inception_row("3b"),
      pool_row("pool3", 3),
      *(inception_row(tag) for tag in ("4a", "4b", "4c", "4d", "4e")),
      pool_row("pool4", model.pool4_window),
      inception_row("5a"),
      inception_row("5b"),
  ]
  final_map = out_shape("inception_5b")
  features = out_shape("pool5")
  logits_shape = (1, 1, model.num_classes)
  rows += [
      Row("pool5", "avg pool", f"{final_map[0]}x{final_map[1]}/1", (1, 1) + features, 0),
      Row("dropout", f"dropout ({model.dropout_rate:.0%})", "", (1, 1) + features, 0),
      Row(
          "classifier",
          "linear",
          "",
          logits_shape,
          1,
          (),
          _cost_under(costs, "classifier"),
          paper.PRINTED["classifier"],
      ),
      Row("softmax", "softmax", "", logits_shape, 0),
  ]
  aux_rows = [
      Row(name, f"aux head ({name[-2:]})", "", logits_shape, 3, (), _cost_under(costs, name))
      for name in ("aux_4a", "aux_4d")
      if name in params
  ]
  total = sum((row.cost for row in rows), LayerCost())
  total_with_aux = sum((row.cost for row in aux_rows), total)
  return Report(rows, aux_rows, total, total_with_aux)


def _fmt_k(weights: int) -> str:
  return f"{weights / 1024:.1f}K"


def _fmt_m(macs: int) -> str:
  return f"{macs / 1e6:.1f}M"


def _fmt_total_macs(macs: int) -> str:
  return f"{macs / 1e9:.3f}G" if macs >= 1e8 else _fmt_m(macs)


def _table_lines(rows: Sequence[Row]) -> Iterator[str]:
  header = (
      "type",
      "patch/stride",
      "output size",
      "depth",
      *CHANNEL_COLUMNS,
      "params",
      "paper",
      "ops",
      "paper",
      "flag",
  )
  yield "| " + " | ".join(header) + " |"
  yield "|" + "---|" * len(header)
  for row in rows:
    channels = [str(c) if c else "" for c in row.channels] or [""] * len(CHANNEL_COLUMNS)
    has_cost = row.cost.weights > 0
    printed = row.printed
    cells = (
        row.kind,
        row.patch,
        "x".join(map(str, row.output)),
        str(row.depth),
        *channels,
        _fmt_k(row.cost.weights) if has_cost else "",
        f"{printed.params_k:g}K" if printed and printed.params_k is not None else "",
        _fmt_m(row.cost.macs) if has_cost else "",
        f"{printed.ops_m:g}M" if printed and printed.ops_m is not None else "",
        ("DIFFERS: " + ", ".join(row.flags)) if row.flags else "",
    )
    yield "| " + " | ".join(cells) + " |"


def format_report(report: Report, title: str) -> str:
  printed_weights_k = sum(p.params_k for p in paper.PRINTED.values() if p.params_k)
  lines = [
      f"## {title}",
      "",
      "params = conv/dense weights in K = 1024 (biases and BN not counted, as in the paper);",
      "ops = multiply-adds per image in M = 10^6. LRN layers (paper variant) are not rows of",
      f"Table 1. 'DIFFERS' marks rows where this model and the printed figure are more than "
      f"{paper.FLAG_RELATIVE_TOLERANCE:.0%} apart;",
      "for the `paper` variant at 224x224 those are the paper's own misprints (docs/paper_notes.md).",
      "",
      *_table_lines(report.rows),
  ]
  if report.aux_rows:
    lines += [
        "",
        "Auxiliary heads (training only; not in Table 1):",
        "",
        *_table_lines(report.aux_rows),
    ]
  total, with_aux = report.total, report.total_with_aux
  lines += [
      "",
      "| total | without aux heads | with aux heads | paper |",
      "|---|---|---|---|",
      f"| parameters (all, incl. biases/BN) | {total.params:,} | {with_aux.params:,} | |",
      f"| weights (Table 1 units) | {_fmt_k(total.weights)} | {_fmt_k(with_aux.weights)} "
      f"| {printed_weights_k:,.0f}K (sum of Table 1) |",
      f"| multiply-adds | {_fmt_total_macs(total.macs)} | {_fmt_total_macs(with_aux.macs)} "
      f"| {paper.PRINTED_TOTAL_OPS_G}G |",
  ]
  return "\n".join(lines)


def print_report(
    variant: str = "paper", image_size: int = 224, width: float = 1.0, num_classes: int = 1000
) -> None:
  from inception.variants import create_model

  model = create_model(variant, width=width, num_classes=num_classes)
  report = build_report(model, image_size)
  title = (
      f"GoogLeNet `{variant}` at {image_size}x{image_size}, width {width:g}, "
      f"{num_classes} classes"
  )
  print(format_report(report, title))


def define_flags() -> None:
  """Called only when run as a program, so importing this module registers no global flags."""
  from inception.variants import VARIANTS

  flags.DEFINE_enum("variant", "paper", sorted(VARIANTS), "Model variant.")
  flags.DEFINE_integer("image_size", 224, "Input height and width.")
  flags.DEFINE_float("width", 1.0, "Channel multiplier.")
  flags.DEFINE_integer("num_classes", 1000, "Classes of the classifier.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  print_report(
      flags.FLAGS.variant, flags.FLAGS.image_size, flags.FLAGS.width, flags.FLAGS.num_classes
  )


if __name__ == "__main__":
  define_flags()
  cli.run(main)
