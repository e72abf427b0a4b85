"""The binaries' front door: every mistake a user can make ends in one `error:` line, exit 1.

    from runtime import cli
    cli.define_config_flag("config", "configs/digits.py", "Training config file.")
    ...
    if __name__ == "__main__":
      cli.run(main)

A mistake is a flag absl rejects, a `--config.x=y` override that names no field or does not
parse, or an error the binary raises about its input (USER_ERRORS: a missing dataset, a busy
workdir, a bad weights file...). The traceback of a reported error goes to the log at debug
verbosity (`--verbosity=1`), or to stderr with GOOGLENET_TRACEBACK=1; any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import difflib
import importlib.util
import os
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_dict, config_flags

TRACEBACK_ENV = "GOOGLENET_TRACEBACK"
# name -> default file of the config flags defined by define_config_flag.
_CONFIG_FLAGS: dict[str, str] = {}


class UserError(Exception):
  """A problem for the user to fix that no built-in error class names (a busy workdir)."""


# Errors about the user's input, settings or files: the project raises its own as subclasses
# (CorruptImageError, WeightsError, CheckpointWriteError, NonFiniteLossError...); ImportError
# is an optional library that is missing. Anything else (a RuntimeError from XLA) is a bug
# or a machine fault and keeps its traceback.
USER_ERRORS = (ValueError, OSError, ImportError, FloatingPointError, UserError)


def _overrides(name: str, argv: Sequence[str]) -> list[str]:
  """Field paths of the `--<name>.a.b=value` (or `--<name>.a.b value`) arguments."""
  prefix = f"--{name}."
  return [arg[len(prefix) :].split("=", 1)[0] for arg in argv if arg.startswith(prefix)]


def _config_file(name: str, default: str, argv: Sequence[str]) -> str:
  for index, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and index + 1 < len(argv):
      return argv[index + 1]
  return default


def _field_paths(config: config_dict.ConfigDict, prefix: str = "") -> Iterator[str]:
  for key, value in config.items():
    yield prefix + key
    if isinstance(value, config_dict.ConfigDict):
      yield from _field_paths(value, f"{prefix}{key}.")


def _has_field(config: config_dict.ConfigDict, path: str) -> bool:
  node = config
  for part in path.split("."):
    if not isinstance(node, config_dict.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def unknown_field_message(name: str, config_file: str, overrides: Sequence[str]) -> str | None:
  """'--config.bogus names no field of configs/digits.py; closest: ...', or None when every
  override names a field (or the file cannot be read: absl's own message says why)."""
  try:
    path, _, argument = config_file.partition(":")
    spec = importlib.util.spec_from_file_location("_config_for_message", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(argument) if argument else module.get_config()
  except Exception:  # the file's own problem, reported by absl as it is
    return None
  fields = list(_field_paths(config))
  for override in overrides:
    if not _has_field(config, override):
      closest = difflib.get_close_matches(override, fields, n=3, cutoff=0.5)
      if closest:
        hint = "closest: " + ", ".join(f"--{name}.{field}" for field in closest)
      else:
        parent = override.rpartition(".")[0]
        siblings = sorted(f for f in fields if f.rpartition(".")[0] == parent)
        shown = ", ".join(siblings[:12]) + (", ..." if len(siblings) > 12 else "")
        hint = f"fields there: {shown}; --helpfull lists them all"
      return f"--{name}.{override} names no field of {config_file} ({hint})."
  return None


def _override_error(error: Exception, argv: Sequence[str]) -> SystemExit:
  for name, default in _CONFIG_FLAGS.items():
    message = unknown_field_message(name, _config_file(name, default, argv), _overrides(name, argv))
    if message:
      return SystemExit(f"error: {message}")
  return SystemExit(f"error: a config override could not be applied: {error}")


def define_config_flag(name: str, default: str, help_string: str) -> None:
  """`config_flags.DEFINE_config_file` (locked: no new fields). It applies the command line's
  overrides to the default file at once, and again at parsing when --<name>=FILE is given;
  a mistake in one is one line naming the field, either time."""
  _CONFIG_FLAGS[name] = default
  try:
    config_flags.DEFINE_config_file(name, default, help_string, lock_config=True)
  except (AttributeError, KeyError, TypeError, ValueError) as error:
    raise _override_error(error, sys.argv[1:]) from None


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's parser, with a rejected flag as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    raise SystemExit(f"error: {error}\nPass --helpfull to see the flags.") from None
  except (AttributeError, KeyError, TypeError, ValueError) as error:
    raise _override_error(error, argv[1:]) from None


def report(error: BaseException) -> SystemExit:
  """The one line for a user error, with its traceback where asked for; raise the result.
  In a multi-process job a lost peer can be the error's cause: its own line then wins."""
  from runtime import lost_host  # (imports JAX: not before a binary needs it)

  lost_host.settle_before_reporting_an_error()
  details = "".join(traceback.format_exception(error))
  logging.debug("The error's traceback:\n%s", details)
  if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
    print(details, file=sys.stderr, end="")
  return SystemExit(f"error: {error}")


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)` with USER_ERRORS as one `error:` line and exit status 1."""

  def guarded(argv: list[str]) -> None:
    try:
      main(argv)
    except USER_ERRORS as error:
      raise report(error) from None

  app.run(guarded, flags_parser=parse_flags)
