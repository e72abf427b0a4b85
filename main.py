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
  from train.host import start_jax_process
  from train.reporting import quiet_orbax_info_logs
  quiet_orbax_info_logs()
  config = FLAGS.config
  start_jax_process(config.distributed, config.compilation_cache)

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
