"""Package faces that import their modules on first use (PEP 562).

`import train` or `from input_pipeline import config` (as a config file does) must not import
JAX, Flax or TensorFlow; the names a package exports are resolved when first read.
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
from typing import Any


def exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
  """(__getattr__, __dir__) for `package`, exporting name -> the module that defines it."""
  module = importlib.import_module(package)

  def getattr_(name: str) -> Any:
    if name not in names:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(names[name]), name)
    setattr(module, name, value)  # later lookups skip this function
    return value

  def dir_() -> list[str]:
    return sorted(set(vars(module)) | set(names))

  return getattr_, dir_
