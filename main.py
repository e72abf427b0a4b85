"""Entry point: python main.py --config=configs/googlenet.py --workdir=DIR [--config.x=y ...]

Starting again with the same workdir resumes from its latest checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and summary.json.")
config_flags.DEFINE_config_file("config", "configs/digits.py", "Training config file.", lock_config=True)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import jax
  import tensorflow as tf

  from train.reporting import quiet_orbax_info_logs
  quiet_orbax_info_logs()
  config = FLAGS.config
  if config.distributed:
    jax.distributed.initialize()
  # tf.data runs on the host; TensorFlow must not claim the accelerators JAX uses.
  tf.config.experimental.set_visible_devices([], "GPU")
  logging.info("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].device_kind)

  import train
  try:
    train.train_and_evaluate(config, FLAGS.workdir)
  except (ValueError, train.NonFiniteLossError) as error:
    logging.exception("Run stopped")  # the traceback, for when the message is not enough
    raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
  import host_allocator
  host_allocator.reexec_with_allocator_settings()  # XLA:CPU buffers without page faults
  app.run(main)
