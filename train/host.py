"""Process start-up shared by the binaries that run JAX beside tf.data."""
from __future__ import annotations

import jax
from absl import logging


def start_jax_process(distributed: bool) -> None:
  """Joins the multi-host runtime if asked, keeps TensorFlow off the accelerators, logs devices."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if distributed:
    jax.distributed.initialize()
  # tf.data runs on the host; TensorFlow must not claim the accelerators JAX uses.
  tf.config.experimental.set_visible_devices([], "GPU")
  logging.info("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].device_kind)
