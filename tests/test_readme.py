"""The README's code runs as printed.

Every ```python block is run in order in one fresh interpreter (they build on each other, as a
reader pastes them), in an empty folder where the README's main job has just written
``sweep_results/``. Every ```bash line that calls ``python -m dynamics...`` is checked: the main
job, ``--help`` and ``--list`` lines are run as printed; any other line is run with ``--help``
appended, which makes argparse check the values given before it and list the flags, so a flag
the README uses but the CLI lacks is caught without paying for the run. ``pip`` and ``pytest``
commands are not run here.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAIN_JOB = "python -m dynamics.sweep --eps 0.01"

# Runs each block in one shared namespace; on an exception prints the block number first.
DRIVER = r"""
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for i, (line, src) in enumerate(blocks, 1):
    print(f"=== README python block {i} (README line {line})", flush=True)
    try:
        exec(compile(src, f"README.md python block {i}", "exec"), ns)
    except BaseException as e:
        traceback.print_exc()
        print(f"README python block {i} (line {line}) failed: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
        sys.exit(1)
"""


def fenced_blocks(lang, path=README):
    """[(line number of the block's first code line, source)] of every ```lang block of a
    markdown file (the README unless told)."""
    text = Path(path).read_text()
    out = []
    for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.S | re.M):
        out.append((text.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return out


def dynamics_commands(path=README):
    """(block number, command) for each ``python -m dynamics...`` part of a ```bash line."""
    cmds = []
    for i, (_, src) in enumerate(fenced_blocks("bash", path), 1):
        for line in src.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:2] == ["python", "-m"] and words[2].startswith("dynamics"):
                    cmds.append((i, words))
    return cmds


def _env():
    return dict(os.environ, MPLBACKEND="Agg")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An empty folder in which the README's main job has run, as a new user would."""
    wd = tmp_path_factory.mktemp("readme")
    words = shlex.split(MAIN_JOB)
    assert any(w == words for _, w in dynamics_commands()), f"README no longer shows {MAIN_JOB!r}"
    r = subprocess.run([sys.executable, *words[1:]], cwd=wd, capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert r.returncode == 0, f"{MAIN_JOB} failed:\n{r.stderr[-3000:]}"
    assert (wd / "sweep_results" / "sweep.nc").is_file()
    return wd


def test_readme_has_code_to_test():
    assert len(fenced_blocks("python")) >= 4
    assert len(dynamics_commands()) >= 4


def test_python_blocks_run_in_order(workdir):
    blocks = fenced_blocks("python")
    (workdir / "blocks.json").write_text(json.dumps(blocks))
    (workdir / "driver.py").write_text(DRIVER)
    r = subprocess.run([sys.executable, "driver.py", "blocks.json"], cwd=workdir,
                       capture_output=True, text=True, env=_env(), timeout=600)
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("README python block")]
    assert r.returncode == 0, (failed[-1] if failed else r.stderr[-3000:]) + "\n" + r.stderr[-3000:]
    # The main block prints the flow's end point beside the closed form p_+ = (1 + sqrt(1 - 4 a eta)) / (2a)
    # and both Jacobian eigenvalues {-2 eta, 2 eta - p_+}. The slowest rate is 2 eta = 0.1, so at
    # t = 200 the end point is within ~1e-8 of the fixed point (at t = 100, ~3e-5, the fourth
    # decimal of an eigenvalue was observed to flip), and the four printed decimals must agree.
    flow = re.search(r"flow: theta\(200\) = ([-\d.]+), phi\(200\) = ([-\d.]+), status 0", r.stdout)
    gd = re.search(r"GD: +theta\(200\) = ([-\d.]+), phi\(200\) = ([-\d.]+)", r.stdout)
    theory = re.search(r"theory: p_\+ = ([-\d.]+), eigenvalues ([-\d.]+) ([-\d.]+)", r.stdout)
    eig = re.search(r"Jacobian eigenvalues: ([-\d.]+) ([-\d.]+)", r.stdout)
    assert flow and gd and theory and eig, r.stdout
    p_plus = theory.group(1)
    assert flow.groups() == gd.groups() == (p_plus, p_plus), r.stdout
    assert sorted(eig.groups()) == sorted(theory.groups()[1:]), r.stdout


def check_dynamics_command(words, cwd, where):
    """Run one printed ``python -m dynamics...`` command as the module docstring says: ``--help``
    and ``--list`` lines as printed, any other with ``--help`` appended (argparse then checks the
    values before it), and every ``--flag`` it uses must be one its ``--help`` lists."""
    literal = "--help" in words or "-h" in words or "--list" in words
    args = words[1:] if literal else [*words[1:], "--help"]
    r = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                       env=_env(), timeout=300)
    cmd = " ".join(words)
    assert r.returncode == 0, f"{where}: `{' '.join(['python', *args[1:]])}` exited {r.returncode}: {r.stderr.strip()[-2000:]}"
    assert r.stdout.strip(), f"{where}: `{cmd}` printed nothing"
    if not literal:
        unknown = [w for w in words if w.startswith("--") and w not in r.stdout]
        assert not unknown, f"{where}: `{cmd}` uses flags its --help does not list: {unknown}"


@pytest.mark.parametrize("block,words", dynamics_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_bash_commands(block, words, workdir):
    if " ".join(words) == MAIN_JOB:
        return  # run once by the workdir fixture
    check_dynamics_command(words, workdir, f"bash block {block}")


def test_theory_citations_resolve():
    """Every ``docs/theory.md section N`` cited in the project names a section that exists."""
    theory = (ROOT / "docs" / "theory.md").read_text()
    sections = [int(n) for n in re.findall(r"^## (\d+)\. ", theory, re.M)]
    assert sections == list(range(1, len(sections) + 1)), sections
    assert "THEORY.md" not in README.read_text()
    files = [README, *(ROOT / "dynamics").rglob("*.py"), *(ROOT / "tests").glob("*.py"),
             *(ROOT / "notebooks").glob("*.py"), *(ROOT / "notes").glob("*.md")]
    bad = []
    for f in files:
        text = f.read_text()
        for m in re.finditer(r"docs/theory\.md`?,?(?: sections?)? (\d+)(?:\s*-\s*(\d+))?", text):
            for n in {int(m.group(1)), int(m.group(2) or m.group(1))}:
                if n not in sections:
                    bad.append(f"{f.relative_to(ROOT)}: {m.group(0)}")
    assert not bad, bad
