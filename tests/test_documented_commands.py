"""A documented command is a promise: every one in the README and the docstrings parses.

tests/documented_commands.py finds them and runs each binary up to the start of its work
(flags, config file, `--config.x=y` overrides, config checks). It runs in a subprocess because
absl flags are process-global and every binary defines its own.
"""

import os
import subprocess
import sys

from tests import documented_commands
from tests.local_cluster import REPO_ROOT


def test_the_documentation_names_the_main_commands():
  texts = [c.text for c in documented_commands.collect()]
  # The paper's recipe with a TFDS data_dir: once broken by a None default (issue 16).
  assert any(
      "--config=configs/googlenet.py" in t and "--config.data.data_dir=" in t for t in texts
  ), texts
  assert any("python -m eval.detect" in t for t in texts)
  assert any("python -m eval.classify" in t for t in texts)
  assert any(t.startswith("srun ") for t in texts)  # prefixes before `python` are handled
  assert not any("..." in t for t in texts)  # patterns with placeholders are not commands


def test_every_documented_command_parses_with_its_binary():
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
  done = subprocess.run(
      [sys.executable, "-m", "tests.documented_commands"],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  failures = [line for line in done.stdout.splitlines() if line.startswith(("FAIL", "     "))]
  assert done.returncode == 0 and not failures, "\n".join(failures) or done.stderr[-3000:]
  assert '"failed": 0' in done.stdout
