"""examples/quickstart.ipynb runs from top to bottom (on a tiny budget) and is committed without outputs."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def test_quickstart_runs_on_a_tiny_budget(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells), "commit the notebook with its outputs cleared"
    monkeypatch.setenv("RELAX_QUICKSTART_STEPS", "400")  # the kernel inherits this process's environment
    monkeypatch.setenv("RELAX_QUICKSTART_DIR", str(tmp_path / "runs"))
    working_dir = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources=working_dir).execute()
    for name in ("relax_a2c/metrics.json", "a2c/final_model.zip", "relax_a2c.png", "relax_a2c_vs_a2c.png"):
        assert (tmp_path / "runs" / name).is_file(), name
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 3  # two curves and the frames
