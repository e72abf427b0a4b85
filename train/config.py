"""The training config: every field the training system reads, its default, and the checks.

A config file (configs/*.py) starts from `default_config()` and changes what its experiment
needs; the file locks the ConfigDict, so a misspelt command-line key fails. `check_config`
runs first in every training run and also catches a config file (or a programmatic config)
that adds a misspelt field, which would otherwise be silently ignored while the default is
used. The sections have their own homes, next to the code that reads them: `model`
(inception/config.py), `data` (input_pipeline/config.py); this module owns the rest.

The defaults are the paper's recipe (section 6) as the BVLC Caffe solver
(`models/bvlc_googlenet/solver.prototxt`) runs it. Light on purpose: loading a config must not
import JAX, Flax or TensorFlow.
"""

from __future__ import annotations

import numbers
from typing import Any

import ml_collections

from inception import config as model_config
from input_pipeline import config as data_config


def default_config() -> ml_collections.ConfigDict:
  """Every training field with its default."""
  config = ml_collections.ConfigDict()
  config.model = model_config.default_model_config()
  config.data = data_config.default_data_config()

  # Global batch over all devices and hosts; the learning rate scales linearly with it
  # (Goyal et al. 2017) from base_learning_rate at lr_reference_batch_size.
  config.batch_size = 32
  config.eval_batch_size = 250
  config.base_learning_rate = 0.01
  config.lr_reference_batch_size = 32
  config.warmup_epochs = 0.0
  # The paper: lr x 0.96 every 8 epochs (Caffe: every 320,000 iterations of 32 images).
  config.lr_decay_factor = 0.96
  config.lr_decay_every_epochs = 8.0
  config.num_epochs = 250.0  # Caffe's max_iter 10,000,000 at batch 32
  # When positive, overrides num_epochs (handy for smoke runs: --config.num_train_steps=20).
  config.num_train_steps = -1
  config.momentum = 0.9
  config.nesterov = False
  config.weight_decay = 2e-4  # not on biases
  config.bias_lr_multiplier = 2.0
  config.aux_loss_weight = 0.3  # section 5: the aux losses are "weighted by 0.3"
  config.label_smoothing = 0.0
  # What the model learns (train/tasks.py): 'classification' (labels), or 'multibox' (boxes
  # from the 'multibox:<dir>' source, with model.name='multibox' and evaluators
  # ('multibox_recall',)).
  config.task = "classification"
  # MultiBox only: alpha in F = alpha * F_loc + F_conf (Erhan et al., CVPR 2014, eq. 3). The
  # location term sums squared offsets in [0, 1] image units over the few matched priors while
  # the confidence term sums over all K priors, so alpha is large; 10 is our choice (not a
  # published value, and not tuned).
  config.multibox_location_weight = 10.0
  # Polyak averaging: ema <- d * ema + (1 - d) * params after every step, with
  # d = min(ema_decay, (1 + step) / (10 + step)) (train/state.py: ema_decay_at).
  config.ema_decay = 0.9999
  # Average the BatchNorm moving statistics too (TF's Inception training did, with
  # tf.moving_average_variables()); False evaluates the EMA weights with the raw statistics.
  config.ema_batch_stats = True
  config.grad_clip_norm = 0.0  # 0 disables clipping

  config.seed = 0
  config.log_every_steps = 100
  config.eval_every_steps = 10_000  # plus a final evaluation; -1 evaluates only at the end
  # Evaluators run at every evaluation, on the raw and the Polyak-averaged parameters
  # (train/evaluators.py: 'top_k' loss/top-1/top-5, 'per_class' accuracy per class).
  config.evaluators = ("top_k",)
  config.checkpoint_every_steps = 5_000
  config.keep_checkpoints = 3
  # Exported model or training workdir to initialise from (see inception.import_weights).
  config.init_from = ""
  # Parameter subtrees (top-level names, e.g. "classifier") re-initialised instead of loaded.
  config.init_from_reinit = ()
  # The submodule the init_from variables fill (e.g. 'trunk' of MultiBox); empty: the model.
  config.init_from_into = ""
  # Multi-host: call jax.distributed.initialize(). TPU pods, SLURM and Open MPI are detected;
  # elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID
  # (runtime/process.py).
  config.distributed = False
  # Multi-host: a process not heard from for this long is lost, and every other process then
  # exits (status 1, one error line naming it and the last complete checkpoint) so that the
  # job can be relaunched; keep it above the longest stall of a healthy process.
  config.lost_host_seconds = 45.0  # runtime/lost_host.py's DEFAULT_SECONDS
  # JAX's persistent compilation cache, so a resumed or repeated run skips XLA compilation:
  # 'auto' (~/.cache/googlenet_jax/xla, or under $XDG_CACHE_HOME), 'off', or a directory.
  config.compilation_cache = "auto"
  return config


def _type_matches(value: Any, reference: Any) -> bool:
  if reference is None or value is None:
    return True
  if isinstance(reference, bool) or isinstance(value, bool):
    return isinstance(value, bool) == isinstance(reference, bool)
  if isinstance(reference, numbers.Real):
    return isinstance(value, numbers.Real) and (
        isinstance(reference, float) or isinstance(value, int)
    )
  if isinstance(reference, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(reference))


def _check_keys(
    config: ml_collections.ConfigDict,
    reference: ml_collections.ConfigDict,
    prefix: str,
    open_sections: tuple[str, ...] = (),
) -> None:
  """Every key known (except in `open_sections`, whose builder names unknown keys itself) and
  of the reference's type."""
  for key in config.keys():
    name = f"{prefix}{key}"
    if key not in reference:
      if prefix.rstrip(".") in open_sections:
        continue
      raise ValueError(
          f"Unknown config key {name!r}; valid keys here are {sorted(reference.keys())}."
      )
    value, expected = config[key], reference[key]
    if isinstance(expected, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise ValueError(f"Config key {name!r} must be a section, got {value!r}.")
      _check_keys(value, expected, name + ".", open_sections)
    elif not _type_matches(value, expected):
      raise ValueError(
          f"Config key {name!r} must be of type {type(expected).__name__} "
          f"(like {expected!r}), got {type(value).__name__} {value!r}."
      )


def check_config(config: ml_collections.ConfigDict) -> None:
  """ValueError naming the field of a training config that is unknown, mistyped or unusable."""
  # The model section may carry any field of the model it names; building it checks them.
  _check_keys(config, default_config(), "", open_sections=("model",))
  for key in (
      "batch_size",
      "eval_batch_size",
      "log_every_steps",
      "checkpoint_every_steps",
      "keep_checkpoints",
      "lr_reference_batch_size",
  ):
    if config[key] < 1:
      raise ValueError(f"config.{key}={config[key]} must be at least 1.")
  if not 0.0 <= config.ema_decay < 1.0:
    raise ValueError(f"config.ema_decay={config.ema_decay} must be in [0, 1).")
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ValueError("Set config.num_epochs > 0 or config.num_train_steps > 0.")
  data_config.validate_data_config(config.data)
  # Imported here: building the model needs Flax, which loading a config must not import.
  from inception import models
  from train import evaluators, tasks

  evaluators.check_evaluators(config.evaluators)
  tasks.check_task(config)
  models.create_model_from_config(config.model)  # raises on unknown model names or fields
