"""Classification evaluation library behind `python -m eval.classify` (see that module).

`evaluate` makes one pass over a split: each image's views (the union of the requested crop
schemes, eval/crops.py) are cut once in tf.data, every model scores them on the mesh
(eval/scoring.py), and the host tallies every (first-k models, crops) cell and every single
model (eval/report.py). Every image is counted exactly once: padding carries mask False.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
import dataclasses
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from eval import crops as crops_lib
from eval import multi_crop, renormalize, report, scoring
from inception import create_model_from_config
import input_pipeline
from input_pipeline import eval_preprocess, sharding
from runtime import artifacts, paths, progress
from runtime import mesh as mesh_lib

# Upper bound on one float32 host batch of all views when --batch_size is not given.
HOST_BATCH_BUDGET_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class ModelToEvaluate:
  """A model and its variables; `model` needs only `apply(variables, images, train=False)`."""

  name: str
  model: Any
  variables: Any
  model_config: dict | None = None
  # The input convention its weights expect (the directory's input.json); None: the run's.
  normalization: str | None = None


def load_models(directories: Sequence[str], use_ema: bool) -> list[ModelToEvaluate]:
  """Rebuilds each model from the model.json next to its checkpoint, with its input.json's
  normalisation (evaluation converts the views to it, eval/renormalize.py)."""
  models = []
  for directory in directories:
    variables, model_config = artifacts.load_model_variables(directory, use_ema=use_ema)
    if model_config is None:
      raise ValueError(
          f"{directory} has no {artifacts.MODEL_CONFIG_FILE}; cannot tell which "
          "model its variables belong to."
      )
    if use_ema and paths.isdir(paths.join(directory, artifacts.VARIABLES_SUBDIR)):
      logging.warning(
          "%s is an exported model with one set of parameters; --params=ema does "
          "not apply to it.",
          directory,
      )
    convention = artifacts.read_input_convention(directory) or {}
    models.append(
        ModelToEvaluate(
            directory,
            create_model_from_config(model_config),
            variables,
            model_config,
            convention.get("normalization"),
        )
    )
    logging.info("Loaded %s: %s", directory, model_config)
  return models


def _in_run_convention(entry: ModelToEvaluate, normalization: str) -> ModelToEvaluate:
  """The entry with a model that takes the run's views (`normalization`) and feeds its own."""
  model = renormalize.for_run(entry.model, entry.normalization, normalization, entry.name)
  return entry if model is entry.model else dataclasses.replace(entry, model=model)


def parse_crops(crops: Sequence[Any]) -> tuple[int, ...]:
  try:
    schemes = tuple(sorted({int(c) for c in crops}))
  except ValueError:
    schemes = ()
  if not schemes or any(s not in crops_lib.SCHEMES for s in schemes):
    raise ValueError(f'--crops={",".join(map(str, crops))}: choose from {crops_lib.SCHEMES}')
  return schemes


def default_batch_size(
    eval_batch_size: int, num_views: int, image_size: int, device_count: int, num_images: int
) -> int:
  """eval_batch_size, lowered so that one float32 host batch of every view fits the budget,
  and to the split's size (rounded up to the devices): a 20-image split padded to 120 would
  run six times the forward passes it needs."""
  per_image = num_views * image_size * image_size * 3 * 4
  fits = max(1, HOST_BATCH_BUDGET_BYTES // per_image)
  batch = min(eval_batch_size, fits, -(-max(num_images, 1) // device_count) * device_count)
  return max(device_count, batch // device_count * device_count)


def _to_host(tree: Any) -> Any:
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def evaluate(
    models: Sequence[ModelToEvaluate],
    data_config: ml_collections.ConfigDict,
    *,
    split: str | None = None,
    crops: Sequence[int] = (1, 10, 144),
    batch_size: int | None = None,
    eval_batch_size: int = 120,
    views_per_step: int | None = None,
    combine: str = "mean_softmax",
    mesh: jax.sharding.Mesh | None = None,
    log_every_seconds: float = 30.0,
) -> dict[str, Any]:
  """One pass over the split: every (first-k models, crop scheme) cell and every single model.

  Returns the JSON-ready results (see `eval.classify`); `results['table_markdown']` is the
  Table-3 report. `crops` may be ints or strings; `eval_batch_size` is the number of rows a
  forward pass should see (sets the default batch_size and views_per_step).
  """
  scoring.check_combine(combine)
  if not models:
    raise ValueError("no models to evaluate (--models)")
  start = time.time()
  schemes = parse_crops(crops)
  split = data_config.eval_split if split is None else split
  mesh = mesh_lib.create_data_mesh() if mesh is None else mesh
  image_size = data_config.image_size
  resize_size = eval_preprocess.eval_resize_size(image_size, data_config.eval_resize_ratio)
  views, subsets = crops_lib.union_of_schemes(schemes, image_size, resize_size)
  devices = mesh.devices.size
  num_images = input_pipeline.num_examples(data_config, split)
  if batch_size is None:
    batch_size = default_batch_size(eval_batch_size, len(views), image_size, devices, num_images)
  host_batch = input_pipeline.per_host_batch_size(batch_size, jax.process_count(), devices)
  if views_per_step is None:
    views_per_step = max(1, round(eval_batch_size / batch_size))
  num_classes = input_pipeline.num_classes(data_config)
  num_batches = sharding.eval_batches_per_process(num_images, host_batch, jax.process_count())

  dummy = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  for entry in models:
    logits = jax.eval_shape(
        lambda v, x, m=entry.model: m.apply(v, x, train=False).logits, entry.variables, dummy
    )
    if logits.shape[-1] != num_classes:
      raise ValueError(
          f"model {entry.name} has {logits.shape[-1]} classes but "
          f"{data_config.source!r} has {num_classes}."
      )

  models = [_in_run_convention(entry, data_config.normalization) for entry in models]
  replicated = mesh_lib.replicated(mesh)
  variables = [jax.device_put(entry.variables, replicated) for entry in models]
  weights = jax.device_put(scoring.scheme_weights(subsets, schemes, len(views)), replicated)
  dataset = input_pipeline.create_eval_dataset(
      data_config, batch_size, split, view=multi_crop.view_function(views), with_index=True
  )
  tally = report.Tally(len(models), schemes, num_classes)
  logging.info(
      "Evaluating %d model(s) on %d images of %s/%s: crops %s -> %d distinct views per "
      "image, %d per forward pass; global batch %d images on %d devices, %d batches.",
      len(models),
      num_images,
      data_config.source,
      split,
      schemes,
      len(views),
      scoring.steps_and_chunk(len(views), views_per_step)[1],
      batch_size,
      devices,
      num_batches,
  )

  tracker = progress.Progress(
      "evaluating", num_images, "image", log_every_seconds, f" ({len(views)} views each)"
  )

  def consume(index, pending):
    ranked, labels, mask, positions = _to_host(pending)
    tally.add(ranked, labels, mask, positions)
    tracker.update(int(np.sum(mask)))

  in_flight = collections.deque()
  batches = input_pipeline.prefetch_to_mesh(dataset.as_numpy_iterator(), mesh)
  for index, batch in enumerate(batches, start=1):
    per_model = jnp.stack(
        [
            scoring.crop_scores(
                entry.model, entry_variables, batch["image"], weights, combine, views_per_step
            )
            for entry, entry_variables in zip(models, variables)
        ]
    )
    in_flight.append(
        (
            index,
            (
                scoring.rank_models(per_model, combine),
                batch["label"],
                batch["mask"],
                batch["index"],
            ),
        )
    )
    if len(in_flight) > 1:  # fetch batch k-1 while the devices work on batch k
      consume(*in_flight.popleft())
  while in_flight:
    consume(*in_flight.popleft())
  tracker.close()
  if tally.count != num_images:
    raise RuntimeError(f"counted {tally.count} images of {split!r}, expected {num_images}")

  cells = [tally.cell("ensemble", k, s) for k in range(len(models)) for s in schemes] + [
      tally.cell("single", m, s) for m in range(len(models)) for s in schemes
  ]
  rows = report.table_cells(tally)
  names = [entry.name for entry in models]
  return {
      "split": split,
      "source": data_config.source,
      "num_images": tally.count,
      "num_classes": num_classes,
      "combine": combine,
      "crops": list(schemes),
      "views": [dataclasses.asdict(view) for view in views],
      "scheme_views": {str(s): subsets[s] for s in schemes},
      "models": [
          {"name": e.name, "config": e.model_config, "normalization": e.normalization}
          for e in models
      ],
      "best_single_model": tally.best_single_model(),
      "cells": cells,
      "table": [{k: v for k, v in row.items() if k != "per_class"} for row in rows],
      "table_markdown": report.markdown_table(rows, names),
      "predictions": tally.predictions(),
      "batch_size": batch_size,
      "views_per_step": scoring.steps_and_chunk(len(views), views_per_step)[1],
      "devices": devices,
      "images_per_second": tracker.rate(),
      "wall_seconds": round(time.time() - start, 2),
  }
