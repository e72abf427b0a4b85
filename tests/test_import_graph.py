"""The package boundaries, read from the source: every import statement, at module level or
inside a function, between the repository's own modules (tests and benchmarks excluded)."""

import ast
import collections
import pathlib

from tests.local_cluster import REPO_ROOT

_NOT_LIBRARY = ("tests", "benchmarks", "notebooks")


def _modules() -> dict[str, pathlib.Path]:
  found = {}
  for path in pathlib.Path(REPO_ROOT).rglob("*.py"):
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    if parts[0] in _NOT_LIBRARY or any(part.startswith(".") for part in parts):
      continue
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    found[name] = path
  return found


def import_graph() -> dict[str, set[str]]:
  """module -> the repository modules it imports (`from pkg import mod` points at pkg.mod)."""
  modules = _modules()
  edges = collections.defaultdict(set)
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
      targets = []
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          kept = package.split(".")[: len(package.split(".")) - node.level + 1]
          base = ".".join(kept + ([base] if base else []))
        submodules = [
            f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules
        ]
        targets = submodules if len(submodules) == len(node.names) else [base, *submodules]
      edges[name].update(t for t in targets if t in modules and t != name)
  return edges


def _top(name: str) -> str:
  return name.split(".")[0]


def test_import_graph_has_no_cycles():
  edges = import_graph()
  state, stack, cycles = {}, [], []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for target in sorted(edges.get(node, ())):
      if state.get(target) == "open":
        cycles.append(stack[stack.index(target) :] + [target])
      elif target not in state:
        visit(target)
    stack.pop()
    state[node] = "done"

  for node in sorted(edges):
    if node not in state:
      visit(node)
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# package -> packages it must never import (the layers, lowest first: runtime, kernels,
# inception / input_pipeline, train, eval / detection).
_FORBIDDEN = {
    "runtime": {"kernels", "inception", "input_pipeline", "train", "eval", "detection", "configs"},
    "kernels": {"inception", "input_pipeline", "train", "eval", "detection", "configs"},
    "inception": {"input_pipeline", "train", "eval", "detection", "configs"},
    "input_pipeline": {"inception", "train", "eval", "detection", "configs"},
    "train": {"eval", "detection", "configs"},
    "eval": {"detection", "configs"},
    "detection": {"configs"},
}


# Binaries sit above every layer; eval/detect.py is the detection package's binary.
_BINARIES = ("main", "eval.classify", "eval.detect")


def test_no_arrow_runs_against_the_layers():
  wrong = sorted(
      f"{source} -> {target}"
      for source, targets in import_graph().items()
      for target in targets
      if source not in _BINARIES and _top(target) in _FORBIDDEN.get(_top(source), ())
  )
  assert not wrong, "imports across the layers: " + ", ".join(wrong)


def test_only_configs_import_config_files():
  importers = sorted(
      f"{source} -> {target}"
      for source, targets in import_graph().items()
      for target in targets
      if _top(target) == "configs" and _top(source) != "configs"
  )
  assert not importers, ", ".join(importers)


def test_the_graph_sees_function_level_imports():
  # inception/import_weights.py imports runtime.artifacts inside a function, on purpose.
  assert "runtime.artifacts" in import_graph()["inception.import_weights"]
