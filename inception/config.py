"""The `model` section of the experiment config: which model to build, and its fields.

`name` picks the architecture from the model registry (inception/models.py); the other keys
are that model's fields (for GoogLeNet: `variant` plus any GoogLeNet field, e.g. `lrn` or
`bn_epsilon`, which a config may add). Light on purpose: config files import this module, and
loading a config must not import JAX or Flax.
"""

import ml_collections


def default_model_config() -> ml_collections.ConfigDict:
  """The paper's GoogLeNet (BVLC Caffe `bvlc_googlenet`: LRN, true 5x5 branches)."""
  return ml_collections.ConfigDict(
      dict(
          name="googlenet",
          variant="paper",
          num_classes=1000,
          width=1.0,
          dropout_rate=0.4,
          aux_dropout_rate=0.7,
          aux_heads=True,
          # bfloat16 on GPU/TPU halves activation memory; parameters stay float32. On XLA:CPU
          # bfloat16 is slower than float32 (train/compiler_options.py), and training warns.
          dtype="float32",
          param_dtype="float32",
          # Op formulations: 'auto' uses the CPU-fast ones only in programs lowered for CPU and
          # XLA's own on GPU/TPU (kernels/select.py); 'cpu' or 'xla' forces one everywhere.
          kernels="auto",
      )
  )
