"""The notebooks of docs/notebooks, executed as a reader runs them.

Each notebook runs once per module, in a fresh ``python3`` kernel whose working
directory is the notebooks' folder, and the tests look at what its cells showed:
the cluster widget and dashboard link, the run report, the plots, and the step
run by hand. The committed files must carry no outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
NAMES = ("neuro.ipynb", "astro.ipynb")
DASHBOARD = re.compile(r"Dask dashboard: http://\S+/status")


def _execute(name: str):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


@pytest.fixture(scope="module")
def neuro():
    return _execute("neuro.ipynb")


@pytest.fixture(scope="module")
def astro():
    return _execute("astro.ipynb")


def _cell(nb, cell_id: str):
    for cell in nb.cells:
        if cell.get("id") == cell_id:
            return cell
    raise AssertionError(f"no cell {cell_id!r}")


def _text(cell) -> str:
    """What a cell printed, and the plain-text form of what it displayed."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def _mimes(cell) -> set[str]:
    return {
        mime
        for out in cell.outputs
        if out.output_type in ("execute_result", "display_data")
        for mime in out.data
    }


def _errors(nb) -> list[str]:
    return [
        f"{cell.get('id')}: {out.ename}: {out.evalue}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]


def _shows_cluster(nb) -> None:
    widget = _cell(nb, "cluster")
    assert "text/html" in _mimes(widget)
    html = "".join(o.data.get("text/html", "") for o in widget.outputs if "data" in o)
    assert "LocalCluster" in html and "/status" in html
    assert DASHBOARD.search(_text(_cell(nb, "dashboard-link")))


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any(cell.cell_type == "markdown" for cell in nb.cells)


def test_no_warnings_from_libraries(neuro, astro):
    """dipy imports tqdm.auto, which warns in a kernel without ipywidgets."""
    for nb in (neuro, astro):
        shown = "".join(_text(c) for c in nb.cells if c.cell_type == "code")
        assert "IProgress not found" not in shown
        assert "TqdmWarning" not in shown


def test_neuro_runs_the_pipeline(neuro):
    assert _errors(neuro) == []
    _shows_cluster(neuro)
    report = _text(_cell(neuro, "report"))
    assert "2 done, 0 skipped, 0 failed" in report
    assert re.search(r"^sub-01\s+done\b", report, re.MULTILINE)
    assert re.search(r"^sub-02\s+done\b", report, re.MULTILINE)


def test_neuro_plots_fa(neuro):
    assert "image/png" in _mimes(_cell(neuro, "plot-fa"))
    assert "('x', 'y', 'z') (24, 24, 14)" in _text(_cell(neuro, "open-fa"))


def test_neuro_step_by_hand_on_the_cluster(neuro):
    lazy = _text(_cell(neuro, "by-hand-graph"))
    assert "dask.array<" in lazy and "shape=(24, 24, 14), dtype=bool" in lazy
    done = _text(_cell(neuro, "by-hand-compute"))
    assert re.search(r"[1-9]\d* voxels in the brain mask, computed on 2 workers", done)
    assert "same as the pipeline's mask: True" in done


def test_astro_runs_the_pipeline(astro):
    assert _errors(astro) == []
    _shows_cluster(astro)
    report = _text(_cell(astro, "report"))
    statuses = re.findall(r"^(\S+)\s+(exposure|patch)\s+(\w+)", report, re.MULTILINE)
    assert len([s for s in statuses if s[1] == "exposure"]) == 6
    assert len([s for s in statuses if s[1] == "patch"]) >= 1
    assert {s[2] for s in statuses} == {"done"}
    found = re.search(r"^(\d+) sources detected", report, re.MULTILINE)
    assert found and int(found.group(1)) > 0


def test_astro_plots_a_coadd_with_its_sources(astro):
    assert "image/png" in _mimes(_cell(astro, "plot-coadd"))
    shown = _text(_cell(astro, "open-coadd"))
    found = re.search(r"(\d+) sources$", shown, re.MULTILINE)
    assert found and int(found.group(1)) > 0


def test_astro_step_by_hand_on_the_cluster(astro):
    assert "dask.array<" in _text(_cell(astro, "by-hand-graph"))
    done = _text(_cell(astro, "by-hand-compute"))
    measured = float(re.search(r"measured on a worker: ([\d.]+)", done).group(1))
    truth = float(re.search(r"of the simulation: +([\d.]+)", done).group(1))
    assert abs(measured - truth) < 0.15 * truth
