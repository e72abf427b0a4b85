"""Entry point: python main.py --config=configs/googlenet.py --workdir=DIR [--config.x=y ...]

Starting again with the same workdir resumes from its latest checkpoint.

Exit status: 0 when the run is complete; 75 when SIGTERM or Ctrl-C stopped it after saving a
checkpoint (run the same command again to resume; schedulers should requeue); 1 with a
one-line `error: ...` for a problem to fix (config, data, workdir); its traceback is logged at
`--verbosity=1`, or printed with GOOGLENET_TRACEBACK=1 (runtime/cli.py).
"""

from runtime import launch

launch.reexec_if_program(__name__)  # before the heavy imports below (runtime/launch.py)

import sys  # noqa: E402

from absl import app, flags  # noqa: E402

from runtime import cli, process  # noqa: E402
import train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard logs and summary.json."
)
cli.define_config_flag("config", "configs/digits.py", "Training config file.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  process.start_jax_process(config.distributed, config.compilation_cache, config.lost_host_seconds)
  summary = train.train_and_evaluate(config, FLAGS.workdir)
  if summary["stopped_by"]:
    sys.exit(train.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
  cli.run(main)
