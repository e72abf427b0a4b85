"""notebooks/quickstart.ipynb runs top to bottom (QUICK, on this CPU) and shows what it promises."""

import os

from nbclient import NotebookClient
import nbformat

from tests import child_process
from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT

NOTEBOOK = os.path.join(REPO_ROOT, "notebooks", "quickstart.ipynb")


def outputs_of(notebook, mime):
  return [
      output["data"][mime]
      for cell in notebook.cells
      if cell.cell_type == "code"
      for output in cell.get("outputs", [])
      if mime in output.get("data", {})
  ]


def test_committed_notebook_holds_no_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_quickstart_runs_top_to_bottom(tmp_path):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(parameters) == 1 and "QUICK = True" in parameters[0].source
  # Injected after the parameters cell's own lines, as papermill does: a fresh workdir, and the
  # suite's compilation cache (tests/conftest.py) instead of the user's.
  parameters[0].source += (
      f"\nWORKDIR = {str(tmp_path / 'quickstart')!r}"
      f"\nCOMPILATION_CACHE = {os.environ['GOOGLENET_TEST_XLA_CACHE']!r}\n"
  )
  # A one-device CPU runtime like Colab's, not the suite's 8 simulated devices.
  env = dict(os.environ)
  env["XLA_FLAGS"] = child_process.xla_flags(suite_compile_flags=True)
  client = NotebookClient(
      notebook,
      timeout=HANG_GUARD_SECONDS,  # per cell
      startup_timeout=HANG_GUARD_SECONDS,  # the kernel's start (nbclient's default: 60 s)
      kernel_name="python3",
      resources={"metadata": {"path": os.path.join(REPO_ROOT, "notebooks")}},
  )
  client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error

  printed = "".join(
      o.get("text", "")
      for c in notebook.cells
      if c.cell_type == "code"
      for o in c.outputs
      if o.get("output_type") == "stream"
  )
  assert "(local checkout)" in printed and "CpuDevice" in printed
  assert "EMA top-1" in printed
  markdown = "\n".join(outputs_of(notebook, "text/markdown"))
  assert "inception (3a)" in markdown and "multiply-adds" in markdown  # Table 1
  table3 = [line for line in markdown.splitlines() if line.startswith("| 2 |")]
  assert [line.split("|")[2].strip() for line in table3] == ["1", "10", "144"]  # Table 3
  assert "mAP" in markdown  # the detection report
  # curves, the 144-crop grid, the detections
  assert len(outputs_of(notebook, "image/png")) >= 3
  assert os.path.exists(tmp_path / "quickstart" / "digits_seed0" / "curves.png")
