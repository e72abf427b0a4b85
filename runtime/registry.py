"""Name -> factory tables: how data sources, detection datasets, models and evaluators are
chosen by config strings, and how a user adds one without editing this repository.

A factory is registered as the callable itself or as a "package.module:function" string,
imported the first time the name is used. Tables list their built-in entries as strings, so
a package's interface module never imports its own implementations (no import circles) and
looking a name up costs only the import of what it names.
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
from typing import Generic, TypeVar

Factory = TypeVar("Factory", bound=Callable)


class Registry(Generic[Factory]):
  """Factories by name; `what` ("config.model.name", ...) and `how_to_add` go into errors."""

  def __init__(self, what: str, how_to_add: str, entries: dict[str, Factory | str]):
    self._what, self._how_to_add = what, how_to_add
    self._entries: dict[str, Factory | str] = dict(entries)

  def register(self, name: str, factory: Factory | str) -> None:
    if name in self._entries:
      raise ValueError(f"{self._what}: {name!r} is already registered")
    self._entries[name] = factory

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def get(self, name: str) -> Factory:
    if name not in self._entries:
      raise ValueError(
          f"{self._what}={name!r}: unknown; registered: {self.names()} "
          f"({self._how_to_add} adds one)."
      )
    factory = self._entries[name]
    if isinstance(factory, str):
      module, _, attribute = factory.partition(":")
      factory = self._entries[name] = getattr(importlib.import_module(module), attribute)
    return factory
