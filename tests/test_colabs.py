"""Every notebook in colabs/ runs headless on runlocal settings, so none can rot.

A notebook's cell tagged `parameters` is replaced by the same names pointing
at the test session's tiny corpus and 2-step model (RUNLOCAL=True); every
other cell runs as written, and any error fails the test.
"""

import glob
import os

import nbformat
from nbclient import NotebookClient
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO_ROOT, "colabs", "*.ipynb")))


def test_there_are_notebooks():
  names = {os.path.basename(p) for p in NOTEBOOKS}
  assert "quickstart.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, trained_workdir, tiny_demo, tmp_path, monkeypatch):
  notebook = nbformat.read(path, as_version=4)
  parameter_cells = [c for c in notebook.cells
                     if "parameters" in c.get("metadata", {}).get("tags", [])]
  assert len(parameter_cells) == 1, f"{path}: needs exactly one cell tagged 'parameters'"
  parameter_cells[0].source = "\n".join([
      f"WORKDIR = {trained_workdir!r}", f"DATA_DIR = {tiny_demo[2]!r}",
      'SPLIT = "train"', f"OUTPUT_DIR = {str(tmp_path)!r}", "RUNLOCAL = True"])
  monkeypatch.setenv("PYTHONPATH", REPO_ROOT)
  client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  errors = [o for c in notebook.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors
  images = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert images, f"{path}: no plot was drawn"
