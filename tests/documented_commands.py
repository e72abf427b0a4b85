"""Every command the documentation shows, parsed by its own binary as a user would type it.

Commands are read from the indented code blocks of the Markdown files and of the module
docstrings of the binaries and configs (backslash continuations joined, `$HOME`-style variables
expanded, `[optional]` brackets dropped so the optional flags are checked too). Each command
that runs one of this repository's binaries (`python main.py`, `python -m eval.classify`, ...)
is then parsed with that binary's absl flags, `--config.x=y` overrides included, and its config
goes through the same checks the binary runs before training or evaluating. Nothing is trained.

    python -m tests.documented_commands      # prints one line per command, exits 1 on a failure
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
import dataclasses
import glob
import json
import os
import re
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ("README.md", "benchmarks/README.md")
DOCSTRING_FILES = (
    "main.py",
    "configs/*.py",
    "eval/*.py",
    "inception/*.py",
    "benchmarks/*.py",
    "detection/*.py",
    "train/*.py",
    "input_pipeline/*.py",
)
_PYTHON = re.compile(r"^(?:\S*/)?python(?:3(?:\.\d+)?)?$")
# A shell line that runs Python on a script or module (prose and code lines do not).
_RUNS_PYTHON = re.compile(r"(?:^|[\s/])python(?:3(?:\.\d+)?)?\s+(?:-m\s+\w|\S+\.py)")


@dataclasses.dataclass(frozen=True)
class Command:
  where: str  # file:line
  text: str
  binary: str  # 'main' or the module run with -m
  args: tuple[str, ...]  # the binary's arguments


def _indented_blocks(text: str) -> Iterator[tuple[int, str]]:
  """(line number, logical line) of every line indented by 4+ spaces, continuations joined."""
  lines = text.splitlines()
  index = 0
  while index < len(lines):
    line = lines[index]
    start = index
    if line.startswith("    ") and line.strip():
      logical = line.strip()
      while logical.endswith("\\") and index + 1 < len(lines):
        index += 1
        logical = logical[:-1].rstrip() + " " + lines[index].strip()
      yield start + 1, logical
    index += 1


def _docstring(path: str) -> tuple[str, int]:
  with open(path) as f:
    tree = ast.parse(f.read())
  if (
      tree.body
      and isinstance(tree.body[0], ast.Expr)
      and isinstance(tree.body[0].value, ast.Constant)
      and isinstance(tree.body[0].value.value, str)
  ):
    return tree.body[0].value.value, tree.body[0].lineno
  return "", 0


def _sources() -> Iterator[tuple[str, int, str]]:
  for name in DOCUMENTS:
    path = os.path.join(REPO_ROOT, name)
    if os.path.exists(path):
      with open(path) as f:
        yield name, 1, f.read()
  for pattern in DOCSTRING_FILES:
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, pattern))):
      text, first_line = _docstring(path)
      yield os.path.relpath(path, REPO_ROOT), first_line, text


def _is_own_module(module: str) -> bool:
  top = module.split(".")[0]
  return os.path.isdir(os.path.join(REPO_ROOT, top)) or os.path.exists(
      os.path.join(REPO_ROOT, f"{top}.py")
  )


def _commands_in(segment: str) -> Command | None:
  """The binary and arguments of one shell command, if it runs this repository's code."""
  words = shlex.split(os.path.expandvars(segment))
  for position, word in enumerate(words):
    if _PYTHON.match(word):
      rest = words[position + 1 :]
      break
  else:
    return None
  if rest[:1] == ["main.py"]:
    return Command("", segment, "main", tuple(rest[1:]))
  if len(rest) >= 2 and rest[0] == "-m" and _is_own_module(rest[1]):
    return Command("", segment, rest[1], tuple(rest[2:]))
  return None


def collect() -> list[Command]:
  """Every documented command that runs this repository's binaries."""
  found = []
  for where, first_line, text in _sources():
    for offset, logical in _indented_blocks(text):
      text_line = logical.split("  #")[0]
      if "..." in text_line:
        continue  # a pattern with placeholders, not a command (e.g. `--config.x=y ...`)
      text_line = text_line.replace("[", "").replace("]", "")
      for segment in re.split(r"&&|;|\|", text_line):
        if not _RUNS_PYTHON.search(segment):
          continue
        try:
          command = _commands_in(segment.strip())
        except ValueError as error:  # shlex: unbalanced quotes
          raise ValueError(f"{where}: cannot split {segment!r} like a shell: {error}") from None
        if command is not None:
          found.append(dataclasses.replace(command, where=f"{where}:{first_line + offset - 1}"))
  return found


# ---- checking, one binary at a time (absl flags are global, so each binary's own set) ----


def _check_training_config(flags_module) -> None:  # flags_module: absl.flags
  from input_pipeline import config as data_config
  from train import config as config_checks

  config = flags_module.FLAGS.config
  config_checks.check_config(config)
  data_config.validate_data_config(config.data)


def _check_detection_config(flags_module) -> None:
  from detection import config as detection_config
  from train import config as config_checks

  config = flags_module.FLAGS.config
  detection_config.validate(config)
  config_checks.check_config(detection_config.training_config(config, "/regions", 0))


def _check_eval_config(flags_module) -> None:
  from input_pipeline import config as data_config

  data_config.validate_data_config(flags_module.FLAGS.config.data)


CONFIG_CHECKS: dict[str, Callable] = {
    "main": _check_training_config,
    "eval.detect": _check_detection_config,
    "eval.classify": _check_eval_config,
}


class _ParsedBeforeWork(Exception):
  """Raised in place of running a binary's main() once its command line has been parsed."""


def _run_until_parsed(command: Command) -> None:
  """Runs the binary as `python ...` would, up to the point where its main() would start.

  absl binaries: `app.run` is replaced by flag parsing plus the binary's config checks, and
  the allocator re-exec (runtime/launch.py) by a no-op. Binaries that parse with argparse run
  whole (they are cheap reports).
  """
  import runpy
  from unittest import mock

  from absl import app, flags

  from runtime import launch

  def parse_only(main, argv=None, **unused_kwargs):
    del main, unused_kwargs
    flags.FLAGS(argv or sys.argv)  # validators included: required flags must be present
    if command.binary in CONFIG_CHECKS:
      CONFIG_CHECKS[command.binary](flags)
    raise _ParsedBeforeWork()

  script = os.path.join(REPO_ROOT, "main.py") if command.binary == "main" else command.binary
  # ml_collections reads `--config.x=y` overrides from sys.argv when the flag is defined.
  with (
      mock.patch.object(sys, "argv", [script, *command.args]),
      mock.patch.object(app, "run", parse_only),
      mock.patch.object(launch, "reexec_with_allocator_settings", lambda: None),
  ):
    try:
      if command.binary == "main":
        runpy.run_path(script, run_name="__main__")
      else:
        runpy.run_module(command.binary, run_name="__main__", alter_sys=True)
    except _ParsedBeforeWork:
      pass


def check(commands: list[Command]) -> list[dict]:
  """[{'where', 'command', 'ok', 'error'}] after parsing each command with its binary."""
  from absl import flags

  results = []
  for command in commands:
    before, modules_before = set(flags.FLAGS), set(sys.modules)
    error = None
    try:
      _run_until_parsed(command)
    except (Exception, SystemExit) as exc:
      error = f"{type(exc).__name__}: {exc}"
    results.append(
        {"where": command.where, "command": command.text, "ok": error is None, "error": error}
    )
    _forget(before, modules_before)
  return results


def _is_repository_module(name: str, module) -> bool:
  """True for this repository's own modules (`train.loop`, `main`), never for a library.

  Judged by the file's place in its package, not by "the file lies under the repository": the
  README's setup puts a virtual environment in the clone (`.venv/`), so jax and TensorFlow lie
  under it too, and dropping jaxlib from sys.modules made the next import abort the process
  (jaxlib 0.10.2: `absl::log_internal::SetTimeZone() has already been called`, SIGABRT).
  """
  path = getattr(module, "__file__", None) or ""
  top = name.split(".")[0]
  package = os.path.join(REPO_ROOT, top)
  return path == package + ".py" or path.startswith(package + os.sep)


def _forget(flags_before: set[str], modules_before: set[str]) -> None:
  """Undoes a binary's flag definitions, and drops the repository modules it imported (their
  import defines flags, e.g. benchmarks.roofline importing benchmarks.throughput). Libraries
  stay imported: some cannot be imported twice in one process (see _is_repository_module)."""
  from absl import flags

  flags.FLAGS.unparse_flags()
  for name in set(flags.FLAGS) - flags_before:
    delattr(flags.FLAGS, name)
  for name in set(sys.modules) - modules_before:
    if _is_repository_module(name, sys.modules[name]):
      del sys.modules[name]


def _leaves(config, prefix=""):
  for key in config.keys():
    value = config[key]
    if hasattr(value, "keys"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def check_none_fields_overridable() -> list[dict]:
  """Every config field whose default is None, overridden from the command line."""
  from unittest import mock

  from absl import flags
  from ml_collections import config_flags

  flags_before = set(flags.FLAGS)

  def parse(argv):
    _forget(flags_before, set(sys.modules))
    with mock.patch.object(sys, "argv", argv):
      config_flags.DEFINE_config_file("config", None, "A config file.", lock_config=True)
      flags.FLAGS(argv)
    return flags.FLAGS.config

  results = []
  for path in sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "*.py"))):
    if os.path.basename(path) == "__init__.py":
      continue
    relative = os.path.relpath(path, REPO_ROOT)
    for field, value in list(_leaves(parse(["check", f"--config={relative}"]))):
      if value is not None:
        continue
      override = f"--config.{field}=/some/dir"
      error = None
      try:
        if parse(["check", f"--config={relative}", override]).get(field.split(".")[0]) is None:
          raise AssertionError("no section")
      except (Exception, SystemExit) as exc:
        error = f"{type(exc).__name__}: {exc}"
      results.append({"where": relative, "command": override, "ok": error is None, "error": error})
  _forget(flags_before, set(sys.modules))
  return results


def main() -> int:
  sys.path.insert(0, REPO_ROOT)
  os.chdir(REPO_ROOT)  # commands name config files relative to the repository
  results = check(collect()) + check_none_fields_overridable()
  for result in results:
    status = "ok  " if result["ok"] else "FAIL"
    print(
        f"{status} {result['where']}: {result['command']}"
        + ("" if result["ok"] else f"\n     {result['error']}")
    )
  print(json.dumps({"commands": len(results), "failed": sum(not r["ok"] for r in results)}))
  return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
  sys.exit(main())
