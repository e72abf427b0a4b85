"""A documented command is a promise: every one in the README and the docstrings parses.

tests/documented_commands.py finds them and runs each binary up to the start of its work
(flags, config file, `--config.x=y` overrides, config checks). It runs in a subprocess because
absl flags are process-global and every binary defines its own.
"""

import os
import subprocess
import sys
import types

from absl import flags

from tests import documented_commands
from tests.child_process import HANG_GUARD_SECONDS
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


def test_only_repository_modules_are_dropped_between_commands():
  """A library installed in a virtual environment inside the clone (the README's setup puts
  `.venv` there) stays imported: jaxlib aborts the process when it is imported twice."""
  root = documented_commands.REPO_ROOT
  site = os.path.join(root, ".venv", "lib", "python3.11", "site-packages")
  library = types.ModuleType("fake_library")
  library.__file__ = os.path.join(site, "fake_library", "__init__.py")
  own = types.ModuleType("configs.fake_config")
  own.__file__ = os.path.join(root, "configs", "fake_config.py")
  before = set(sys.modules)
  sys.modules.update({"fake_library": library, "configs.fake_config": own})
  try:
    documented_commands._forget(set(flags.FLAGS), before)
    assert sys.modules.get("fake_library") is library
    assert "configs.fake_config" not in sys.modules
  finally:
    sys.modules.pop("fake_library", None)
    sys.modules.pop("configs.fake_config", None)
  is_own = documented_commands._is_repository_module
  assert is_own("main", types.SimpleNamespace(__file__=os.path.join(root, "main.py")))
  assert not is_own("jax", types.SimpleNamespace(__file__=os.path.join(site, "jax", "x.py")))


def test_every_documented_command_parses_with_its_binary():
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
  done = subprocess.run(
      [sys.executable, "-m", "tests.documented_commands"],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
      check=False,
  )
  failures = [line for line in done.stdout.splitlines() if line.startswith(("FAIL", "     "))]
  assert done.returncode == 0 and not failures, "\n".join(failures) or done.stderr[-3000:]
  assert '"failed": 0' in done.stdout
