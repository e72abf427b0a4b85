"""In-training evaluation: the evaluators `config.evaluators` names, run at every evaluation.

Each runs on the raw and on the Polyak-averaged variables; its scalars go to TensorBoard as
`eval/<key>` and `eval_ema/<key>` and into summary.json as `eval_<key>`, `eval_ema_<key>`.

    'top_k'      loss, top-1 and top-5 accuracy (the default; the paper's metrics; top-5 only
                 with more than 5 classes), and the majority-class rate: the top-1 of a model
                 that learned nothing but the most frequent class
    'per_class'  mean and minimum over classes of the per-class top-1 accuracy
    'multibox_recall'  MultiBox (config.task='multibox'): box recall at IoU 0.5 of the top 200
                 and top 10 boxes against the priors' own (detection/multibox_task.py)

Adding one (a multi-crop or calibration metric, say):

    from train import evaluators

    def build_my_metric(model, config, mesh):   # once per run, before training starts
      step = jax.jit(...)                        # compile what it needs
      def evaluate(variables) -> dict[str, float]: ...
      return evaluate

    evaluators.register_evaluator("my_metric", build_my_metric)  # or "module:function"
    # then --config.evaluators='("top_k","my_metric")'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import input_pipeline
from runtime import mesh as mesh_lib
from runtime.registry import Registry
from train.losses import topk_correct
from train.step import make_eval_step

Evaluate = Callable[[dict[str, Any]], dict[str, float]]
Factory = Callable[[nn.Module, ml_collections.ConfigDict, jax.sharding.Mesh], Evaluate]


def sum_over_eval_split(
    step: Callable,
    variables: dict[str, Any],
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
) -> dict[str, np.ndarray]:
  """Sums of `step(variables, batch)`'s outputs over the eval split, added up on the host one
  batch behind the device.

  Each batch's sums are fetched after the next batch is dispatched, so at most two evaluation
  programs are in flight. Adding them on the devices instead (eager `+` on global arrays, one
  more multi-device program per batch, nothing waited for until the end) left a dozen
  collective programs queued; on XLA:CPU with 2 processes (gloo) that deadlocked within the
  first 9 evaluations in 2 of 2 stress runs (every device thread waiting in a collective
  whose last participant was never launched); with this loop, 150 of 150 evaluations ran.
  """
  dataset = input_pipeline.create_eval_dataset(config.data, config.eval_batch_size)
  fetched, in_flight = [], None
  for batch in input_pipeline.prefetch_to_mesh(dataset.as_numpy_iterator(), mesh):
    sums = step(variables, batch)
    if in_flight is not None:
      fetched.append(jax.device_get(in_flight))
    in_flight = sums
  fetched.append(jax.device_get(in_flight))
  return {name: np.sum([np.asarray(sums[name]) for sums in fetched], axis=0) for name in fetched[0]}


def build_top_k(
    model: nn.Module, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> Evaluate:
  step = jax.jit(make_eval_step(model), out_shardings=mesh_lib.replicated(mesh))

  def evaluate(variables):
    totals = sum_over_eval_split(step, variables, config, mesh)
    count = float(totals["count"])
    results = {"loss": float(totals["loss"]) / count, "top1": float(totals["top1"]) / count}
    if "top5" in totals:
      results["top5"] = float(totals["top5"]) / count
    results["majority_class_rate"] = float(np.max(totals["label_counts"])) / count
    results["count"] = count
    return results

  return evaluate


def build_per_class(
    model: nn.Module, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> Evaluate:
  num_classes = config.model.num_classes

  def per_class_step(variables, batch):
    logits = model.apply(variables, batch["image"], train=False).logits
    members = jax.nn.one_hot(batch["label"], num_classes) * batch["mask"][:, None]
    return {
        "correct": jnp.sum(members * topk_correct(logits, batch["label"], 1)[:, None], 0),
        "count": jnp.sum(members, axis=0),
    }

  step = jax.jit(per_class_step, out_shardings=mesh_lib.replicated(mesh))

  def evaluate(variables):
    totals = sum_over_eval_split(step, variables, config, mesh)
    present = totals["count"] > 0  # a class absent from the split has no accuracy
    accuracy = totals["correct"][present] / totals["count"][present]
    return {
        "mean_class_top1": float(np.mean(accuracy)),
        "min_class_top1": float(np.min(accuracy)),
        "count": float(np.sum(totals["count"])),
    }

  return evaluate


EVALUATORS: Registry[Factory] = Registry(
    "config.evaluators",
    "train.evaluators.register_evaluator",
    {
        "top_k": build_top_k,
        "per_class": build_per_class,
        "multibox_recall": "detection.multibox_task:build_recall",
    },
)


def register_evaluator(name: str, factory: Factory | str) -> None:
  """Makes `name` selectable in config.evaluators; a "module:function" string is imported lazily."""
  EVALUATORS.register(name, factory)


def check_evaluators(names: tuple[str, ...]) -> None:
  if not names:
    raise ValueError(f"config.evaluators is empty: name one or more of {EVALUATORS.names()}.")
  for name in names:
    EVALUATORS.get(name)


def build_evaluators(
    names: tuple[str, ...],
    model: nn.Module,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
) -> Evaluate:
  """One function running every named evaluator; their results in one dict."""
  check_evaluators(names)
  built = [EVALUATORS.get(name)(model, config, mesh) for name in names]

  def evaluate_all(variables):
    results = {}
    for evaluate in built:
      results.update(evaluate(variables))
    return results

  return evaluate_all
