"""Every notebook in notebooks/ runs top to bottom on small settings (``DYNAMICS_QUICK=1``)."""

import os
from pathlib import Path

import nbclient  # test extra: nbclient, nbformat, ipykernel, jupytext
import nbformat
import pytest


ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _digests():
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in NOTEBOOKS}


@pytest.fixture(scope="module")
def committed():
    """Digests of the notebook files before this module runs any of them."""
    return _digests()


def test_notebooks_exist(committed):
    names = {p.stem for p in NOTEBOOKS}
    assert {"scalar_simsiam", "byol_ema", "slow_fast", "linear_alignment"} <= names, names


def test_notebooks_are_stored_executed():
    """The committed notebooks carry their outputs (a reader sees the figures on the repository
    page): every code cell ran, in order, without an error, and each shows a figure."""
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        counts = [c.execution_count for c in code]
        assert all(isinstance(n, int) for n in counts), (p.name, counts)
        assert counts == sorted(counts), (p.name, counts)
        outs = [o for c in code for o in c.outputs]
        assert not [o for o in outs if o.output_type == "error"], p.name
        assert any("image/png" in o.get("data", {}) for o in outs), f"{p.name} stores no figure"



@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One kernel for all notebooks; each test resets its namespace first (``%reset -f``), so a
    notebook sees no variable of another, while imported modules and compiled JAX programs are
    reused (most of a notebook's cost is compiling)."""
    from jupyter_client import KernelManager

    env = dict(os.environ, DYNAMICS_QUICK="1", MPLBACKEND="Agg")
    # the kernel imports this checkout's package even when another copy is installed
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path_factory.mktemp("nbrun")))
    yield km
    km.shutdown_kernel(now=True)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel):
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
    client = nbclient.NotebookClient(nb, km=kernel, timeout=600, kernel_name="python3")
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert images, f"{path.name} showed no figure"


def test_notebooks_match_their_percent_scripts():
    """Each .ipynb holds the same cells as its paired .py (jupytext percent format)."""
    import jupytext

    for p in NOTEBOOKS:
        script = p.with_suffix(".py")
        assert script.is_file(), f"{p.name} has no paired {script.name}"
        a = [(c.cell_type, c.source.strip()) for c in nbformat.read(p, as_version=4).cells]
        b = [(c.cell_type, c.source.strip()) for c in jupytext.read(script).cells]
        assert a == b, f"{p.name} and {script.name} differ: run jupytext --sync {script}"


def test_running_the_notebooks_leaves_the_committed_files_alone(committed):
    """Runs above execute copies in memory: the files on disk are not rewritten."""
    assert _digests() == committed
