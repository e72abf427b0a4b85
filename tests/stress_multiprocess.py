"""Stress for the multi-process runtime: 2 processes x 4 CPU devices on 127.0.0.1, a checkpoint
and an evaluation after every training step, until the end or until no process logs anything
new for `--stall_seconds`.

    python -m tests.stress_multiprocess --steps=150

Prints the evaluations each process has logged as it goes, then DONE or HUNG (exit status 1).
Not part of the suite (minutes long); it is how the 2-process deadlock in the evaluation was
found and its fix checked (train/evaluators.py `sum_over_eval_split`): before, both runs hung by the 9th
evaluation; after, 150 of 150 evaluations ran.
"""

import argparse
import os
import re
import sys
import tempfile
import time

from tests.local_cluster import LocalCluster
from tests.test_multiprocess import main_command


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--stall_seconds", type=float, default=120.0)
  args = parser.parse_args()
  root = tempfile.mkdtemp(prefix="stress_multiprocess_")
  command = main_command(
      os.path.join(root, "workdir"),
      num_train_steps=args.steps,
      eval_every_steps=1,
      checkpoint_every_steps=1,
      keep_checkpoints=2,
  )
  with LocalCluster(
      command, 2, devices_per_process=4, log_dir=os.path.join(root, "logs")
  ) as cluster:
    seen, changed = None, time.time()
    while True:
      time.sleep(5)
      logs = cluster.logs()
      evaluations = [len(re.findall("eval at step", log)) for log in logs]
      if all("Done:" in log for log in logs):
        print("DONE", evaluations, flush=True)
        return 0
      if evaluations != seen:
        seen, changed = evaluations, time.time()
      elif time.time() - changed > args.stall_seconds:
        print(f"HUNG after evaluations {evaluations}; logs in {root}/logs", flush=True)
        return 1
      print(evaluations, flush=True)


if __name__ == "__main__":
  sys.exit(main())
