"""The documentation site: it builds with ``mkdocs build --strict`` and its code runs as printed.

The build test is skipped without the ``docs`` extra. Every ```python block of a page under
``docs/`` runs, page by page, in one fresh interpreter (as a reader pastes them); every
``python -m dynamics...`` line of a ```bash block is checked as the README's are
(``tests/test_readme.py``). The generated pages are checked against their sources: the gallery
against ``figures/manifest.json``, the command-line reference against each parser's flags.
"""

import html
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import DRIVER, README, _env, check_dynamics_command, dynamics_commands, fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
BUILD_COMMAND = 'pip install -e ".[docs]" && mkdocs build --strict'

spec = importlib.util.spec_from_file_location("site_hooks", DOCS / "_site_hooks.py")
site_hooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(site_hooks)

spec = importlib.util.spec_from_file_location("api_docstrings", DOCS / "_api_docstrings.py")
api_docstrings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api_docstrings)

HAS_DOCS = all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings_handlers",
                                                     "mkdocs_jupyter", "pymdownx", "latex2mathml"))


def _rel(p):
    return str(p.relative_to(ROOT))


def test_pages_have_code_to_test():
    assert any(fenced_blocks("python", p) for p in PAGES)
    assert any(dynamics_commands(p) for p in PAGES)


def _run_blocks(page, tmp_path):
    blocks = fenced_blocks("python", page)
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "driver.py").write_text(DRIVER.replace("README python block", f"{page.name} python block").replace("README line", "line"))
    r = subprocess.run([sys.executable, "driver.py", "blocks.json"], cwd=tmp_path,
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, f"{_rel(page)}:\n{r.stderr[-3000:]}"
    return r.stdout


def test_basin_map_page(tmp_path):
    out = _run_blocks(DOCS / "guide" / "basin-map.md", tmp_path)
    # The page's claim: a fast predictor protects more starts. On the default sweep's setting
    # (README: 22.6 % collapsed at eps = 0.01 on 64 x 64) the gap to eps = 1 is tens of
    # percent, far above a 12 x 12 grid's resolution (1/144).
    m = re.search(r"collapsed share at eps = 1, 0.01: \[([\d.e-]+)\s+([\d.e-]+)\]", out)
    assert m, out
    slow, fast = map(float, m.groups())
    assert slow > fast + 0.1, (slow, fast)
    assert (tmp_path / "basins_simsiam.png").stat().st_size > 0


def test_linear_sweep_page(tmp_path):
    out = _run_blocks(DOCS / "guide" / "linear-sweep.md", tmp_path)
    # X has eigenvalues (0.5, 1.5) and sigma2 = 0.5: eta_crit = d^2 / (4 (d + sigma2)) = 0.0625
    # and 0.28125 (docs/theory.md section 3). eta = 0.5 lies past both, where no non-trivial fixed
    # point exists, so every mode of every start collapses (at eta = 0 a mode whose start lies in
    # its collapse basin may still go, so only the share at eta = 0.5 is fixed by the theory).
    lines = out.strip().splitlines()
    frac = [float(v) for v in re.findall(r"[\d.]+(?:e-?\d+)?", lines[-2])]
    crit = sorted(float(v) for v in re.findall(r"[\d.]+(?:e-?\d+)?", lines[-1]))
    assert crit == pytest.approx([0.0625, 0.28125], rel=1e-12), out
    assert len(frac) == 2 and frac[1] == 1.0, out


def test_new_model_page(tmp_path):
    out = _run_blocks(DOCS / "guide" / "new-model.md", tmp_path)
    # Tian convention, sigma2 = 0.5 (a = 1.5), eta = 0.05: p_pm = (1 +- sqrt(1 - 4 a eta)) / (2a)
    # and the Jacobian eigenvalues there are {-2 eta, 2 eta - p} (docs/theory.md section 2),
    # printed to four decimals; the field at a fixed point vanishes to rounding.
    a, eta = 1.5, 0.05
    rows = re.findall(r"phi = ([\d.]+): \|field\| = ([\d.e+-]+), eigenvalues ([-+\d.]+) ([-+\d.]+)", out)
    assert len(rows) == 2, out
    for phi, field, e0, e1 in rows:
        assert float(field) < 1e-12
        assert sorted([float(e0), float(e1)]) == pytest.approx(sorted([-2 * eta, 2 * eta - float(phi)]), abs=1e-4)
    p = sorted(float(r[0]) for r in rows)
    root = (1 - 4 * a * eta) ** 0.5
    assert p == pytest.approx([(1 - root) / (2 * a), (1 + root) / (2 * a)], abs=1e-4)


def test_explorer_page(tmp_path):
    out = _run_blocks(DOCS / "guide" / "explorer.md", tmp_path)
    # Loss convention, sigma2 = 0.5 (a = 1.5), eta = 0.15: p_pm = (1 +- sqrt(1 - 4 a eta)) / (2a);
    # the fixed points are theta = phi = +-p_+ (stable), (+-p_-, p_-) (saddles) and the
    # collapsed origin (docs/theory.md section 2), printed to four decimals by Newton's
    # iteration (converged to 1e-10).
    a, eta = 1.5, 0.15
    root = (1 - 4 * a * eta) ** 0.5
    p_plus, p_minus = (1 + root) / (2 * a), (1 - root) / (2 * a)
    rows = re.findall(r"fixed point theta = ([-+\d.]+), phi = ([-\d.]+): (\w+)", out)
    expected = sorted([(-p_plus, p_plus, "stable"), (p_plus, p_plus, "stable"), (0.0, 0.0, "stable"),
                       (-p_minus, p_minus, "saddle"), (p_minus, p_minus, "saddle")])
    assert len(rows) == len(expected), out
    for (th, ph, kind), (eth, eph, ekind) in zip(sorted((float(t), float(p), k) for t, p, k in rows),
                                                 expected):
        assert (th, ph, kind) == (pytest.approx(eth, abs=1e-4), pytest.approx(eph, abs=1e-4), ekind)
    # a start outside the separatrix ends at p_+ (to the printed digits)
    m = re.search(r"theta\(t1\) = ([\d.]+), phi\(t1\) = ([\d.]+), non-collapsed", out)
    assert m and float(m.group(1)) == pytest.approx(p_plus, abs=1e-4), out
    # the page's claim: a slow predictor lets more starts collapse (the README's sweep: tens
    # of percent apart, far above a 16 x 16 grid's resolution, 1/256); one map per move
    fast = float(re.search(r"collapsed share at eps = 0.01: ([\d.]+)", out).group(1))
    m = re.search(r"maps drawn: (\d+); collapsed share at eps = 1: ([\d.]+)", out)
    assert m and int(m.group(1)) == 2, out
    assert float(m.group(2)) > fast + 0.1, out


def test_every_page_python_block_is_tested():
    tested = {"basin-map.md", "explorer.md", "linear-sweep.md", "new-model.md"}
    with_code = {p.name for p in PAGES if fenced_blocks("python", p)}
    assert with_code == tested, f"pages with python blocks but no test: {with_code - tested}"


#: commands the README's test already checks word for word are not checked twice
_README_COMMANDS = {tuple(w) for _, w in dynamics_commands(README)}


@pytest.mark.parametrize("where,words", [(f"{_rel(p)} bash block {b}", w) for p in PAGES
                                         for b, w in dynamics_commands(p)
                                         if tuple(w) not in _README_COMMANDS],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_page_commands(where, words, tmp_path):
    check_dynamics_command(words, tmp_path, where)


def test_gallery_page_against_manifest():
    manifest = json.loads((ROOT / "figures" / "manifest.json").read_text())
    page = site_hooks.gallery_markdown(manifest)
    r = subprocess.run([sys.executable, "-m", "dynamics.figures", "--list"], cwd=ROOT,
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    for name, entry in manifest["figures"].items():
        section = page.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert entry["caption"] in section
        assert f"```bash\n{entry['command']}\n```" in section
        # the paper it reproduces, as the caption names it, and what the manifest says of it
        fig = re.match(r"tian(\d+)$", name)
        if fig:
            assert f"**Reproduces:** Tian et al. (2021) Fig. {fig.group(1)}\n" in section
        elif name == "post_toy":
            assert "**Reproduces:** Su (2020)\n" in section
        else:
            assert "**Reproduces:** no published figure\n" in section
        for key in ("paper", "source", "differences"):
            v = entry["params"].get(key)
            if v is not None:
                assert (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) in section
        for f in entry["files"]:
            assert f"(figures/{f})" in section and (ROOT / "figures" / f).is_file()
        # the printed parameters are the manifest's, less the paper named above them
        shown = json.loads(section.split("**Parameters:**\n\n```text\n", 1)[1].split("\n```", 1)[0])
        assert shown == {k: v for k, v in entry["params"].items()
                         if k not in ("paper", "source", "differences")}
        # its command is one the figures CLI runs: python -m dynamics.figures NAME, NAME listed
        words = entry["command"].split()
        assert words[:3] == ["python", "-m", "dynamics.figures"]
        assert all(re.search(rf"^\s*{re.escape(w)}\b", r.stdout, re.M) for w in words[3:]), entry["command"]


def test_cli_page_lists_every_flag():
    parsers = site_hooks.cli_parsers()
    page = site_hooks.cli_markdown(parsers)
    assert {c for c, _ in parsers} >= {"python -m dynamics.sweep", "python -m dynamics.figures",
                                       "python -m dynamics.cifar", "python -m dynamics.sweep --model linear"}
    for cmd, parser in parsers:
        section = page.split(f"\n## `{cmd}`\n", 1)[1].split("\n## ", 1)[0]
        flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
        missing = [f for f in flags if not re.search(rf"{re.escape(f)}\b", section)]
        assert flags and not missing, (cmd, missing)


#: a Sphinx role left as text on a built page
_RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):")


def test_docstring_roles_as_markdown():
    # Targets the resolver knows become optional autorefs to their full path, the title as
    # Sphinx prints it (~ keeps the last name, an explicit title wins); others plain code.
    known = {"State": "dynamics.types.State", "dynamics.solve": "dynamics.solve",
             "dynamics.types.Status": "dynamics.types.Status",
             "Model.loss": "dynamics.models.base.Model.loss"}
    md = api_docstrings.rst_to_markdown
    assert md("A :class:`State` here.", known.get) == (
        'A <autoref identifier="dynamics.types.State" optional>`State`</autoref> here.')
    assert md(":class:`~dynamics.types.Status`", known.get) == (
        '<autoref identifier="dynamics.types.Status" optional>`Status`</autoref>')
    assert md(":py:meth:`the loss <Model.loss>`", known.get) == (
        '<autoref identifier="dynamics.models.base.Model.loss" optional>`the loss`</autoref>')
    assert md("(:mod:`dynamics.\n    solve`)", known.get) == (
        '(<autoref identifier="dynamics.solve" optional>`dynamics.solve`</autoref>)')
    assert md(":func:`jax.vmap`, :data:`~a.B`, :mod:`.data`", known.get) == "`jax.vmap`, `B`, `data`"
    # double-backtick literals are already Markdown; a field list is not a role
    assert md("``x`` :param y: :returns:", known.get) == "``x`` :param y: :returns:"
    # "::" ends a paragraph as ":" (dropped after a space); the literal block stays verbatim
    text = "Codes::\n\n    :func:`State` ``raw``\n\nMore ::\n\n    x\n\nthen :class:`State`."
    assert md(text, known.get) == ("Codes:\n\n    :func:`State` ``raw``\n\nMore\n\n    x\n\nthen "
                                   '<autoref identifier="dynamics.types.State" optional>`State`</autoref>.')
    assert md("a::b and c::", known.get) == "a::b and c::"  # no indented block follows


@pytest.mark.skipif(not HAS_DOCS, reason='needs the docs extra: pip install -e ".[docs]"')
def test_math_as_mathml():
    # arithmatex's two shapes (inline, display; TeX HTML-escaped) become native MathML, the
    # rest of the page untouched
    page = ('<p>a <span class="arithmatex">\\(x &lt; \\sqrt{y}\\)</span> b</p>\n'
            '<div class="arithmatex">\\[\\frac{1}{2a}\\]</div>')
    out = site_hooks.mathml(page)
    assert out.startswith("<p>a <math ") and out.count("<math ") == 2 and "arithmatex" not in out
    inline, display = out.split("<math ")[1:]
    # the escaped "<" reached the converter as "<": an operator, not the text "&lt;"
    assert 'display="inline"' in inline and "<msqrt>" in inline and "<mo><</mo>" in html.unescape(inline)
    assert 'display="block"' in display and "<mfrac>" in display and "</p>" not in display


def test_readme_links_the_site():
    text = README.read_text()
    assert BUILD_COMMAND in text and "mkdocs serve" in text


@pytest.mark.skipif(not HAS_DOCS, reason='needs the docs extra: pip install -e ".[docs]"')
def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=_env() | {"NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    assert "WARNING" not in r.stderr, r.stderr[-4000:]
    manifest = json.loads((ROOT / "figures" / "manifest.json").read_text())
    gallery = (site / "gallery" / "index.html").read_text()
    for entry in manifest["figures"].values():
        for f in entry["files"]:
            assert (site / "figures" / f).is_file()
    assert gallery.count("<img") == sum(any(f.endswith(".png") for f in e["files"])
                                        for e in manifest["figures"].values())
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        html = (site / "notebooks" / nb.stem / "index.html").read_text()
        assert "data:image/png;base64" in html, f"{nb.name}: stored outputs not rendered"
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "solve_batch" in api and "ScalarSiamese" in api
    # the docstrings' Sphinx roles are rendered: none left as text, no autoref left unresolved,
    # and a role whose target the page documents links to it
    raw = [api[max(m.start() - 60, 0):m.end() + 40] for m in _RAW_ROLE.finditer(api)]
    assert not raw, f"{len(raw)} Sphinx roles left as text, e.g. {raw[:3]}"
    assert "<autoref" not in api and "::</p>" not in api
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*'
                     r'href="#dynamics\.types\.State"><code>State</code></a>', api)
    assert re.search(r'href="#dynamics\.solve\.solve_batch"><code>solve_batch</code></a>', api)
    # the guides' closed forms are MathML drawn by the browser, no TeX left for a script
    for guide in ("linear-sweep", "new-model"):
        page = (site / "guide" / guide / "index.html").read_text()
        assert 'display="block"' in page and "<mfrac>" in page and "arithmatex" not in page, guide
    theory = (site / "theory" / "index.html").read_text()
    for heading in re.findall(r"^## (\d+[a-z]?)\. ", (DOCS / "theory.md").read_text(), re.M):
        assert f">{heading}. " in theory, f"theory section {heading} missing from the site"
