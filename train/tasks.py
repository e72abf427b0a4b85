"""What a model is trained to do: the loss and metrics the training step computes, by name.

`config.task` names an entry of TASKS; the training system (optimizer, schedule, EMA,
checkpoints, resume, sharding, processes) is the same for every task, only the loss differs.

    'classification'  softmax cross-entropy on data 'label' plus config.aux_loss_weight x each
                      auxiliary head's (paper section 5); metrics top-1 (and top-5)
    'multibox'        MultiBox's location + logistic confidence loss on the box targets the
                      'multibox:<dir>' source carries (detection/multibox.py)

A task is a `Task`: `loss(output, batch, config) -> (scalar loss, {metric: scalar})` (pure, run
inside the jitted step, so the metrics are batch means), the metrics that head the progress
line, and the evaluators that fit its outputs. Adding one:

    from train import tasks
    tasks.register_task("mine", tasks.Task(loss=my_loss, headline=("my_metric",),
                                           evaluators=("my_evaluator",)))
    # or "module:ATTRIBUTE" naming a Task; then --config.task=mine
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Any

import jax
import ml_collections

from runtime.registry import Registry
from train import losses

Batch = dict[str, jax.Array]
LossFn = Callable[[Any, Batch, ml_collections.ConfigDict], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Task:
  loss: LossFn
  # Train metrics shown after the loss on the progress line (those present).
  headline: tuple[str, ...]
  # The evaluators whose inputs this task's model and data provide; the first is the default.
  evaluators: tuple[str, ...]
  # What the loss reads beyond images: the data source kinds that provide it and the model
  # names whose output it reads (None: any).
  source_kinds: tuple[str, ...] | None = None
  model_names: tuple[str, ...] | None = None


def classification_loss(output, batch: Batch, config: ml_collections.ConfigDict):
  labels = batch["label"]
  loss, parts = losses.total_loss(
      output.logits, output.aux_logits, labels, config.aux_loss_weight, config.label_smoothing
  )
  metrics = {**parts, "top1": losses.topk_correct(output.logits, labels, 1).mean()}
  if losses.has_top5(output.logits):
    metrics["top5"] = losses.topk_correct(output.logits, labels, 5).mean()
  return loss, metrics


CLASSIFICATION = Task(
    loss=classification_loss, headline=("top1", "top5"), evaluators=("top_k", "per_class")
)

# The registry holds Task values (or "module:ATTRIBUTE" strings naming one); it never calls them.
_TASKS: Registry = Registry(
    "config.task",
    "train.tasks.register_task",
    {"classification": CLASSIFICATION, "multibox": "detection.multibox_task:TASK"},
)


def register_task(name: str, task: Task | str) -> None:
  """Makes `config.task=name` train with `task` (a Task or a "module:attribute" string)."""
  _TASKS.register(name, task)


def get_task(name: str) -> Task:
  return _TASKS.get(name)


def check_task(config: ml_collections.ConfigDict) -> None:
  """ValueError when config.task is unknown or an evaluator cannot read its model's output."""
  task = get_task(config.task)
  builtin = {"top_k", "per_class", "multibox_recall"}
  misfits = [name for name in config.evaluators if name in builtin and name not in task.evaluators]
  if misfits:
    raise ValueError(
        f"config.evaluators={tuple(config.evaluators)}: {misfits} cannot evaluate "
        f"config.task={config.task!r}; use {task.evaluators}."
    )
  kind = config.data.source.partition(":")[0]
  if task.source_kinds is not None and kind not in task.source_kinds:
    raise ValueError(
        f"config.data.source={config.data.source!r} has no targets for "
        f"config.task={config.task!r}; it trains on a source of kind {task.source_kinds} "
        "(e.g. 'multibox:<dir>', written by `python -m eval.detect`)."
    )
  name = config.model.get("name", "googlenet")
  if task.model_names is not None and name not in task.model_names:
    raise ValueError(
        f"config.model.name={name!r} cannot be trained with config.task={config.task!r}; "
        f"set --config.model.name to one of {task.model_names}."
    )
