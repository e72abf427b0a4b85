"""Process start-up: the explicit-coordinator environment and the compilation cache setting."""

import os
import sys
import types

import jax
import pytest

from runtime import process

COORDINATOR = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"}


def test_explicit_cluster_from_the_environment():
  assert process.explicit_cluster({}) == {}
  env = {**COORDINATOR, "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert process.explicit_cluster(env) == {"num_processes": 4, "process_id": 3}


@pytest.mark.parametrize(
    "env,message",
    [
        ({"JAX_NUM_PROCESSES": "2"}, "JAX_PROCESS_ID is not"),
        ({"JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES is not"),
        ({"JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "must be integers"),
        (
            {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
            r"must be in \[0, JAX_NUM_PROCESSES=2\)",
        ),
    ],
)
def test_incomplete_or_wrong_cluster_settings_name_the_fix(env, message):
  with pytest.raises(ValueError, match=message):
    process.explicit_cluster({**COORDINATOR, **env})


def test_a_process_count_without_coordinator_asks_for_it():
  with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS"):
    process.explicit_cluster({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})


def test_an_unusable_cache_directory_is_a_warning_and_no_cache(tmp_path, caplog):
  blocker = tmp_path / "a_file"
  blocker.write_text("a file where the cache's parent directory should be")
  wanted = blocker / "xla"
  before = jax.config.jax_compilation_cache_dir
  with caplog.at_level("WARNING"):
    assert process.enable_compilation_cache(str(wanted)) is None
  assert f"No persistent compilation cache: {wanted} cannot be used" in caplog.text
  assert jax.config.jax_compilation_cache_dir == before  # the suite's cache stays on


def test_compilation_cache_setting(tmp_path):
  assert process.compilation_cache_dir("off") is None
  assert process.compilation_cache_dir("auto", {"XDG_CACHE_HOME": str(tmp_path)}) == str(
      tmp_path / "googlenet_jax" / "xla"
  )
  assert process.compilation_cache_dir(str(tmp_path / "c")) == str(tmp_path / "c")
  assert process.compilation_cache_dir("auto", {}).startswith(os.path.expanduser("~"))


def test_late_callbacks_into_closed_event_loops_are_dropped_and_others_kept(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)
  process.drop_late_callbacks_into_closed_event_loops()
  process.drop_late_callbacks_into_closed_event_loops()  # installing twice wraps once
  late = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"))
  other = types.SimpleNamespace(exc_value=RuntimeError("something else"))
  for unraisable in (late, late, other):
    sys.unraisablehook(unraisable)
  assert seen == [other]
