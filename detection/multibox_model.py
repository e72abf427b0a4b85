"""The MultiBox network: an Inception trunk with a box head (Erhan et al., CVPR 2014).

For each image it predicts K box offsets (to the K priors of detection/multibox.py) and K
objectness logits, from the trunk's pooled 1024-d features (GoogLeNet's pool5, times the width)
through two linear layers, as the paper's network ends in fully connected box and confidence
outputs. Registered in the model registry as `config.model.name='multibox'`; every other model
field is the trunk's (a GoogLeNet variant and its fields).
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from inception.googlenet import GoogLeNet
from inception.variants import create_model


@flax.struct.dataclass
class MultiBoxOutput:
  offsets: jax.Array  # float32 [B, K, 4]: normalised box minus prior
  logits: jax.Array  # float32 [B, K]: objectness (sigmoid: confidence)
  features: jax.Array  # float32 [B, D]: the trunk's pooled features


class MultiBox(nn.Module):
  trunk: GoogLeNet
  num_priors: int = 200

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False) -> MultiBoxOutput:
    features = self.trunk(images, train=train).features
    dense = lambda units, name: nn.Dense(
        units,
        kernel_init=nn.initializers.normal(0.01),
        dtype=self.trunk.dtype,
        param_dtype=self.trunk.param_dtype,
        name=name,
    )
    offsets = dense(4 * self.num_priors, "box_offsets")(features)
    logits = dense(self.num_priors, "box_confidences")(features)
    return MultiBoxOutput(
        offsets=offsets.astype(jnp.float32).reshape(-1, self.num_priors, 4),
        logits=logits.astype(jnp.float32),
        features=features,
    )


def create_multibox(num_priors: int = 200, variant: str = "bn", **trunk_fields) -> MultiBox:
  """MultiBox on a GoogLeNet trunk of `variant`; the trunk's own classifier and aux heads are
  not used, so it is built with one class and no aux heads."""
  if num_priors < 1:
    raise ValueError(f"config.model.num_priors={num_priors} must be at least 1.")
  for unused in ("num_classes", "aux_heads"):
    trunk_fields.pop(unused, None)
  trunk = create_model(variant, num_classes=1, aux_heads=False, **trunk_fields)
  return MultiBox(trunk=trunk, num_priors=num_priors)
