"""The import structure the design promises: a ground floor, models below the dynamics,
no private names across modules of the lower floors (read from the source, not run)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "dynamics"


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names], node
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node


def _files(*parts):
    for p in parts:
        path = PKG / p
        yield from ([path] if path.suffix == ".py" else sorted(path.glob("*.py")))


def test_checks_import_nothing_of_the_package_and_types_only_them():
    """checks.py (the value checks every module shares) is the ground floor; types.py stands
    on it alone."""
    assert not [m for m, _, _ in _imports(PKG / "checks.py") if m.startswith("dynamics")]
    assert [m for m, _, _ in _imports(PKG / "types.py") if m.startswith("dynamics")] in (
        [], ["dynamics.checks"])


def test_models_know_nothing_of_dynamics_solvers_or_sweeps():
    for f in _files("models"):
        for m, _, _ in _imports(f):
            if m.startswith("dynamics"):
                assert m.startswith(("dynamics.models", "dynamics.types", "dynamics.checks")), (
                    f.name, m)


def test_solvers_know_nothing_of_analyses_sweeps_or_figures():
    for f in _files("flow.py", "solve", "runtime.py"):
        for m, _, _ in _imports(f):
            assert not m.startswith(("dynamics.analysis", "dynamics.sweep", "dynamics.figures",
                                     "dynamics.plot", "dynamics.classify")), (f.name, m)


def test_no_private_names_cross_modules_of_the_lower_floors():
    for f in _files("checks.py", "types.py", "flow.py", "runtime.py", "models", "solve",
                    "analysis"):
        for m, names, _ in _imports(f):
            if m.startswith("dynamics"):
                assert not any(part.startswith("_") for part in m.split(".")), (f.name, m)
                assert not [n for n in names if n.startswith("_")], (f.name, m, names)


#: modules the lower floors import where they are first used: the diffrax path (diffrax,
#: equinox and optimistix are a fifth of the package's import time, and a sweep on the engine
#: never uses them)
LAZY = ("dynamics.solve.diffrax_flow",)


def test_imports_at_module_top_in_the_lower_floors():
    """Only module-level imports, but for the heavy modules of ``LAZY``."""
    for f in _files("checks.py", "types.py", "flow.py", "runtime.py", "models", "solve",
                    "analysis"):
        tree = ast.parse(f.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in LAZY:
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                inside_try = any(isinstance(t, ast.Try) and node in ast.walk(t) for t in tree.body)
                assert inside_try, (f.name, node.lineno)
