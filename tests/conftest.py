"""Shared pytest set-up.

Eight simulated CPU devices let the sharding tests run on one CPU; the flag must be set
before JAX initialises its backend, which is why it lives here and not in a test.
"""

import os

from tests.child_process import CALLER_XLA_FLAGS_ENV

# The suite is compile-bound: the tiny test models run in milliseconds but compile in seconds.
# XLA's LLVM optimisation passes and its MLIR fusion emitters dominate that compile time, so the
# suite compiles at optimisation level 0 (a narrow GoogLeNet's init: ~15 s -> ~4 s) and with
# XLA:CPU's classic emitters (a width-1/8 digits run at level 0: init 8.6 -> 5.6 s, training
# step 13 -> 6 s). Behaviour is unchanged. Flags of the caller's own XLA_FLAGS (another
# instruction set, `--xla_cpu_max_isa=AVX2`, say) are kept and win over these defaults.
_SUITE_XLA_FLAGS = (
    "--xla_force_host_platform_device_count=8",
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
)
os.environ.setdefault(CALLER_XLA_FLAGS_ENV, os.environ.get("XLA_FLAGS", ""))
_given = os.environ.get("XLA_FLAGS", "").split()
_named = {flag.split("=")[0] for flag in _given}
os.environ["XLA_FLAGS"] = " ".join(
    _given + [flag for flag in _SUITE_XLA_FLAGS if flag.split("=")[0] not in _named]
)
# TensorFlow must never grab an accelerator that JAX wants, and its C++ logging is noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# gs:// paths through fsspec's gcsfs, which the suite's Cloud Storage emulator can reach
# (tests/gcs_emulator.py), not TensorFlow's client, which always calls the real service.
# etils reads the setting once per process, at its first path of any kind: hence here.
os.environ["EPATH_USE_TF"] = "false"
# gcsfs's experimental file system asks Google's servers (with credentials this machine has
# not) whether each bucket is zonal, then falls back to its plain client with a warning.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

# The suite compiles the same small programs many times (every in-process training run compiles
# its init, train and eval steps afresh). JAX's persistent compilation cache, the one the
# binaries use (runtime/process.py), in a directory of this session only, compiles each once.
# The pytest-xdist controller makes the directory and its workers inherit it through the
# environment, so a program one worker compiled is a cache hit for the other; the process that
# made it removes it at exit (the controller exits after its workers).
import atexit
import shutil
import tempfile

from absl import logging as absl_logging
import pytest

from runtime.process import enable_compilation_cache

_CACHE_ENV = "GOOGLENET_TEST_XLA_CACHE"
if not os.environ.get(_CACHE_ENV):
  os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="googlenet_test_xla_cache_")
  atexit.register(shutil.rmtree, os.environ[_CACHE_ENV], True)
enable_compilation_cache(os.environ[_CACHE_ENV])

# Files whose tests take the longest (pytest --durations, summed per file), longest first.
# They are collected first, and pytest.ini's --no-loadscope-reorder keeps that order (xdist
# otherwise orders files by their number of tests), so pytest-xdist's per-file scheduling
# hands them out first and both workers finish together.
_LONG_FILES_FIRST = (
    "test_multiprocess.py",
    "test_multibox_pipeline.py",
    "test_run_safety.py",
    "test_notebook.py",
    "test_model_behaviour.py",
    "test_lost_host.py",
    "test_train_loop.py",
    "test_eval_classify.py",
    "test_gcs_training.py",
    "test_train_sharding.py",
    "test_init_from.py",
    "test_export_platforms.py",
)


def pytest_collection_modifyitems(items):
  rank = {name: index for index, name in enumerate(_LONG_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))


@pytest.fixture(autouse=True)
def _absl_logger_level_restored():
  """Each test starts with absl's logger as the session began: level NOTSET, so it follows
  the root logger that `caplog.at_level` sets. `absl.logging.set_verbosity` (which tests use
  to read INFO records, and to put back the verbosity they found) leaves an explicit level
  behind instead, and a later test in the same worker then saw no INFO records."""
  logger = absl_logging.get_absl_logger()
  level = logger.level
  yield
  logger.setLevel(level)


@pytest.fixture
def absl_info():
  """absl passes INFO records on, for tests that read them through caplog (absl drops records
  below its verbosity); the level is put back after the test by the fixture above."""
  absl_logging.set_verbosity(absl_logging.INFO)
