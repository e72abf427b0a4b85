"""The model registry: config.model.name -> the function that builds that architecture.

    from inception import models

    def create_my_net(num_classes: int = 1000, depth: int = 18, **unused) -> nn.Module: ...

    models.register_model("my_net", create_my_net)     # or "my_package.my_module:create_my_net"
    # then --config.model.name=my_net (the config's model section holds my_net's fields)

A builder takes the model section's fields (all but `name`) as keyword arguments and raises
ValueError naming any field it does not know. Its module must return a Flax module whose
`__call__(images, *, train)` gives an object with `.logits` and `.aux_logits` (as
`inception.GoogLeNetOutput`), which the training step and the evaluators read. Builders named
by a "module:function" string are imported on first use, so registering costs no import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from runtime.registry import Registry

Builder = Callable[..., nn.Module]
DEFAULT_MODEL = "googlenet"
MODELS: Registry[Builder] = Registry(
    "config.model.name",
    "inception.models.register_model",
    {
        # GoogLeNet of any named variant: 'paper', 'bn', 'torchvision' (inception/variants.py).
        "googlenet": "inception.variants:create_model",
        # MultiBox box proposals on a GoogLeNet trunk (detection/multibox_model.py).
        "multibox": "detection.multibox_model:create_multibox",
    },
)


def register_model(name: str, builder: Builder | str) -> None:
  """Makes `config.model.name=<name>` build `builder(**fields)`; a string is imported lazily."""
  MODELS.register(name, builder)


def create_model_from_config(model_config: Mapping[str, Any]) -> nn.Module:
  """The model of a config's `model` section (or a model.json): `name` plus its fields.

  A section without `name` (model.json files written before the registry) is a GoogLeNet.
  """
  fields = dict(model_config)
  return MODELS.get(fields.pop("name", DEFAULT_MODEL))(**fields)
