"""runtime.launch re-executes a process once with glibc's huge-page malloc tunable."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from runtime import launch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc_linux = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc/Linux only"
)


@glibc_linux
def test_wants_reexec_only_when_nothing_is_chosen():
  assert launch.wants_reexec({})
  assert launch.wants_reexec({"MALLOC_ARENA_MAX": "4"})
  assert not launch.wants_reexec({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"})
  assert not launch.wants_reexec({"GLIBC_TUNABLES": launch.TUNABLES})  # done
  assert not launch.wants_reexec({launch.OPT_OUT: "1"})
  assert launch.wants_reexec({launch.OPT_OUT: "0"})


@glibc_linux
def test_reexec_runs_the_same_command_once_with_the_settings(tmp_path):
  script = tmp_path / "probe.py"
  script.write_text(textwrap.dedent(f"""
      import os, sys
      sys.path.insert(0, {REPO!r})
      print("start", sys.argv[1:], os.environ.get("GLIBC_TUNABLES"), flush=True)
      from runtime import launch
      launch.reexec_with_allocator_settings()
      print("running", os.environ["GLIBC_TUNABLES"])
  """))
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", launch.OPT_OUT)}
  out = subprocess.run(
      [sys.executable, "-u", str(script), "--flag=1"],
      env=env,
      check=True,
      capture_output=True,
      text=True,
  ).stdout.splitlines()
  tunables = launch.TUNABLES
  assert out == ["start ['--flag=1'] None", f"start ['--flag=1'] {tunables}", f"running {tunables}"]


@glibc_linux
def test_opt_out_keeps_the_process(tmp_path):
  script = tmp_path / "probe.py"
  script.write_text(
      f"import sys; sys.path.insert(0, {REPO!r}); from runtime import launch\n"
      "print('start'); launch.reexec_with_allocator_settings(); print('end')\n"
  )
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  env[launch.OPT_OUT] = "1"
  out = subprocess.run(
      [sys.executable, str(script)], env=env, check=True, capture_output=True, text=True
  ).stdout.split()
  assert out == ["start", "end"]


def test_binaries_quiet_tensorflow_warnings_unless_the_user_chose(monkeypatch):
  monkeypatch.setenv(launch.OPT_OUT, "1")  # no re-exec in this test process
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  launch.reexec_if_program("some.module")  # imported, not run: nothing changes
  assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
  launch.reexec_if_program("__main__")
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == launch.TF_LOG_LEVEL
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
  launch.reexec_if_program("__main__")
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
