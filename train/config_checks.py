"""Start-of-run config validation: an unknown key or a wrong type fails with its name.

Command-line overrides of a locked ConfigDict are already checked by ml_collections; this
also catches a config file (or a programmatic config) that adds a misspelt field, which
would otherwise be silently ignored while the default is used.
"""
from __future__ import annotations

import numbers
from typing import Any

import ml_collections

import input_pipeline
from inception import create_model_from_config


def _reference_config() -> ml_collections.ConfigDict:
  from configs import googlenet  # the base that every config derives from
  return googlenet.get_config()


def _type_matches(value: Any, reference: Any) -> bool:
  if reference is None or value is None:
    return True
  if isinstance(reference, bool) or isinstance(value, bool):
    return isinstance(value, bool) == isinstance(reference, bool)
  if isinstance(reference, numbers.Real):
    return isinstance(value, numbers.Real) and (isinstance(reference, float) or isinstance(value, int))
  if isinstance(reference, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(reference))


def _check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
                prefix: str) -> None:
  for key in config.keys():
    name = f"{prefix}{key}"
    if key not in reference:
      raise ValueError(f"Unknown config key {name!r}; valid keys here are {sorted(reference.keys())}.")
    value, expected = config[key], reference[key]
    if isinstance(expected, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise ValueError(f"Config key {name!r} must be a section, got {value!r}.")
      _check_keys(value, expected, name + ".")
    elif not _type_matches(value, expected):
      raise ValueError(f"Config key {name!r} must be of type {type(expected).__name__} "
                       f"(like {expected!r}), got {type(value).__name__} {value!r}.")


def check_config(config: ml_collections.ConfigDict) -> None:
  _check_keys(config, _reference_config(), "")
  for key in ("batch_size", "eval_batch_size", "log_every_steps", "checkpoint_every_steps",
              "keep_checkpoints", "lr_reference_batch_size"):
    if config[key] < 1:
      raise ValueError(f"config.{key}={config[key]} must be at least 1.")
  if not 0.0 <= config.ema_decay < 1.0:
    raise ValueError(f"config.ema_decay={config.ema_decay} must be in [0, 1).")
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ValueError("Set config.num_epochs > 0 or config.num_train_steps > 0.")
  input_pipeline.validate_data_config(config.data)
  create_model_from_config(config.model)  # raises on unknown model fields or variants
