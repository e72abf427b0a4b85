"""The MultiBox network: an Inception trunk with a box head (Erhan et al., CVPR 2014).

For each image it predicts K box offsets (to the K priors of detection/multibox.py) and K
objectness logits through two linear layers on the trunk's features, as the paper's network
ends in fully connected box and confidence outputs. `trunk_layer` picks the features:
  * 'inception_5b' (default): the last inception output flattened (7 x 7 x 1024 x width at
    224 px), so the layers see where things are, as Erhan et al.'s fully connected layers on
    the last convolutional map do;
  * 'pool5': its global average, which throws positions away; measured on the synthetic
    shapes it localises worse (kept for comparison).
Registered in the model registry as `config.model.name='multibox'`; every other model
field is the trunk's (a GoogLeNet variant and its fields).
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from inception.googlenet import GoogLeNet
from inception.variants import create_model


@flax.struct.dataclass
class MultiBoxOutput:
  offsets: jax.Array  # float32 [B, K, 4]: normalised box minus prior
  logits: jax.Array  # float32 [B, K]: objectness (sigmoid: confidence)
  features: jax.Array  # [B, D]: what the two layers read (trunk_layer)


class MultiBox(nn.Module):
  trunk: GoogLeNet
  num_priors: int = 200
  trunk_layer: str = "inception_5b"

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False) -> MultiBoxOutput:
    trunk_output = self.trunk(images, train=train)
    features = trunk_output.features
    if self.trunk_layer == "inception_5b":
      feature_map = trunk_output.feature_map
      features = feature_map.reshape(feature_map.shape[0], -1)
    # Scaled to unit size per example: the location loss is quadratic, so its curvature
    # grows with |features|^2; on the flattened map (4096 values at 128 px, width 1/4) SGD at
    # 0.002 diverged within 40 steps, and at 1/sqrt(D) it trains at the recipe's rates.
    features = features * jax.lax.rsqrt(jnp.asarray(features.shape[-1], features.dtype))
    dense = lambda units, name, bias: nn.Dense(
        units,
        kernel_init=nn.initializers.zeros,
        bias_init=nn.initializers.constant(bias),
        dtype=self.trunk.dtype,
        param_dtype=self.trunk.param_dtype,
        name=name,
    )
    # Zero offsets at the start: the network begins from its priors (gradients still reach the
    # kernel through the features). Confidences start at 1/K, about the share of matched
    # priors, so the first steps are not spent pushing K confidences down (the prior-
    # probability bias of Lin et al., RetinaNet, 2017).
    offsets = dense(4 * self.num_priors, "box_offsets", 0.0)(features)
    start_logit = -float(np.log(max(self.num_priors - 1, 1)))
    logits = dense(self.num_priors, "box_confidences", start_logit)(features)
    return MultiBoxOutput(
        offsets=offsets.astype(jnp.float32).reshape(-1, self.num_priors, 4),
        logits=logits.astype(jnp.float32),
        features=features,
    )


TRUNK_LAYERS = ("inception_5b", "pool5")


def create_multibox(
    num_priors: int = 200, trunk_layer: str = "inception_5b", variant: str = "bn", **trunk_fields
) -> MultiBox:
  """MultiBox on a GoogLeNet trunk of `variant`; the trunk's own classifier and aux heads are
  not used, so it is built with one class and no aux heads."""
  if num_priors < 1:
    raise ValueError(f"config.model.num_priors={num_priors} must be at least 1.")
  if trunk_layer not in TRUNK_LAYERS:
    raise ValueError(f"config.model.trunk_layer={trunk_layer!r}: choose one of {TRUNK_LAYERS}.")
  for unused in ("num_classes", "aux_heads"):
    trunk_fields.pop(unused, None)
  trunk = create_model(variant, num_classes=1, aux_heads=False, **trunk_fields)
  return MultiBox(trunk=trunk, num_priors=num_priors, trunk_layer=trunk_layer)
