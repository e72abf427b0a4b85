"""Entry point: python main.py --config=configs/googlenet.py --workdir=DIR [--config.x=y ...]

Starting again with the same workdir resumes from its latest checkpoint.

Exit status: 0 when the run is complete; 75 when SIGTERM or Ctrl-C stopped it after saving a
checkpoint (run the same command again to resume; schedulers should requeue); 1 with a
one-line `error: ...` for a problem to fix (config, data, workdir), the traceback in the log.
"""

from runtime import launch

launch.reexec_if_program(__name__)  # before the heavy imports below (runtime/launch.py)

import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from runtime import process  # noqa: E402
import train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard logs and summary.json."
)
config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "Training config file.", lock_config=True
)
flags.mark_flags_as_required(["workdir"])


def parse_flags(argv):
  """absl's parser, with config-override mistakes (an unknown --config.key) as one line."""
  try:
    return FLAGS(argv)
  except flags.Error as error:
    raise SystemExit(f"error: {error}\nPass --helpfull to see the flags.") from None
  except (AttributeError, KeyError, TypeError, ValueError) as error:
    raise SystemExit(f"error: a --config override could not be applied: {error}") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  process.start_jax_process(config.distributed, config.compilation_cache, config.lost_host_seconds)
  try:
    summary = train.train_and_evaluate(config, FLAGS.workdir)
  except (ValueError, OSError, train.NonFiniteLossError, train.WorkdirBusyError) as error:
    logging.exception("Run stopped")  # the traceback, for when the message is not enough
    raise SystemExit(f"error: {error}") from None
  if summary["stopped_by"]:
    sys.exit(train.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
