"""The live basin explorer: its numbers (the sweep's labels, no recompilation when values
move) and the served page driven in a real browser (the system's Chromium, via Playwright)."""

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jax
import jax.monitoring
import numpy as np
import pytest

from dynamics.explore import compute
from dynamics.explore.browser import chromium_path, free_port
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.scalar import ScalarOptions

ROOT = Path(__file__).resolve().parents[1]

# --- the numbers -----------------------------------------------------------------------------

_COMPILES = [0]


def _count(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


@pytest.mark.parametrize("changes", [
    dict(eps=0.02),  # Rodas4 lanes (eps < 0.3), the explorer's tolerances
    dict(eps=0.5, eta=0.1, sigma2=0.3, variant="byol", beta=0.5, convention="tian",
         rtol=1e-8, atol=1e-10),  # Dopri5 lanes, BYOL, the sweep's default tolerances
])
def test_map_equals_the_sweep(changes):
    # The explorer's map and the sweep's outcome are computed separately (the sweep's lanes
    # carry their own hyperparameter arrays, the explorer's share scalars) under the same rule
    # and tolerances: every label must agree.
    s = compute.Settings(n=10, **changes)
    b = compute.basin(s)
    ds = run(SweepConfig(eps=(s.eps,), eta=(s.eta,), sigma2=(s.sigma2,), beta=(s.beta,),
                         variant=(s.variant,), convention=s.convention, rtol=s.rtol, atol=s.atol,
                         options=ScalarOptions(n=10)))
    assert (ds.attrs["rtol"], ds.attrs["atol"], ds.attrs["t1"]) == (s.rtol, s.atol, s.t1)
    np.testing.assert_array_equal(b.theta0, ds["theta0"].values)
    np.testing.assert_array_equal(b.phi0, ds["phi0"].values)
    expected = ds["outcome"].squeeze().transpose("phi0", "theta0").values
    np.testing.assert_array_equal(b.outcome, expected)
    assert 0 < b.share(compute.Outcome.COLLAPSED) < 1  # a map with both basins in it


def test_no_recompilation_when_values_move():
    s = compute.Settings(n=8, eps=0.01)
    compute.basin(s), compute.theory(s), compute.trajectory(s, 0.5, 0.3)  # compiles
    # values on the same side of the stiffness threshold (eps < 0.3: Rodas4)
    for changes in (dict(eps=0.05), dict(eta=0.1, sigma2=0.8), dict(eps=0.2, eta=0.05),
                    dict(convention="tian")):
        t = s.replace(**changes)
        before = _COMPILES[0]
        b = compute.basin(t)
        compute.theory(t)
        tr = compute.trajectory(t, -0.3, 1.2)
        assert _COMPILES[0] == before, (changes, _COMPILES[0] - before)
    # the counter does see compiles: a program it has not seen is counted
    before = _COMPILES[0]
    jax.jit(lambda x: x * 3.0 + 1.0)(np.arange(3.0))
    assert _COMPILES[0] > before, "the compile counter saw nothing"
    assert b.outcome.shape == (8, 8) and tr.t.shape == (compute.TRAJECTORY_SAVES,)


def test_trajectory_ends_where_the_theory_says():
    # Loss convention, sigma2 = 0.5 (a = 1.5), eta = 0.15: the stable non-collapsed point is
    # theta = phi = p_+ = (1 + sqrt(1 - 4 a eta)) / (2a) (docs/theory.md section 2); a start
    # outside the separatrix ends there, one inside it collapses. 5e-6: by t1 = 200 the flow has
    # relaxed onto the point (slowest rate 2 eta = 0.3), up to the step control's error
    # (rtol 1e-6 of a state of size ~0.5, a few times over).
    s = compute.Settings()
    p = (1 + (1 - 4 * 1.5 * 0.15) ** 0.5) / 3
    tr = compute.trajectory(s, 0.8, 0.5)
    assert tr.outcome == compute.Outcome.NON_COLLAPSED and tr.status == 0
    assert tr.theta[-1] == pytest.approx(p, abs=5e-6) and tr.phi[-1] == pytest.approx(p, abs=5e-6)
    assert (tr.theta[0], tr.phi[0]) == (0.8, 0.5)
    assert compute.trajectory(s, 0.05, 0.5).outcome == compute.Outcome.COLLAPSED


@pytest.mark.parametrize("changes,message", [
    (dict(eps=0), "eps must be > 0, got 0"),
    (dict(sigma2=-0.5), "sigma2 must be >= 0, got -0.5"),
    (dict(eta=float("nan")), "eta must be finite, got nan"),
    (dict(variant="simclr"), "unknown variant 'simclr'"),
    (dict(n=1), "n must be an integer >= 2, got 1"),
    (dict(n=10_000), "n must be <= 512, got 10000"),
    (dict(theta_range=(1, -1)), "theta_range needs lo < hi"),
])
def test_bad_settings_refused_in_one_line(changes, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")) as e:
        compute.Settings(**changes)
    assert "\n" not in str(e.value)


def test_parse_start():
    assert compute.parse_start("0.5, -0.3") == (0.5, -0.3)
    assert compute.parse_start(" 1e-1  2 ") == (0.1, 2.0)
    for bad in ("abc", "1", "1, 2, 3", "nan, 1", ""):
        with pytest.raises(ValueError, match="start must be two finite numbers"):
            compute.parse_start(bad)


def test_cli_refuses_bad_values_in_one_line(capsys):
    from dynamics.explore.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--no-show", "--port", "0"])
    assert e.value.code == 2
    assert "--port must be in 1..65535, got 0" in capsys.readouterr().err
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "dynamics.explore", "--no-show", "--n", "1"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "n must be an integer >= 2, got 1" in r.stderr and "Traceback" not in r.stderr, r.stderr


# --- the page in a browser -------------------------------------------------------------------

CHROMIUM = chromium_path()
HAS_UI = all(importlib.util.find_spec(m) for m in ("panel", "playwright"))


def _wait_until(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("explore") / "server.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dynamics.explore", "--no-show",
                                 "--port", str(port), "--n", "32"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://localhost:{port}/"

    def ready():
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait_until(ready, 180, "the explorer to serve")  # imports and compiles under load
        yield url, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.skipif(not HAS_UI, reason='needs the explore extra: pip install -e ".[explore]"')
def test_explorer_in_a_browser(server):
    if CHROMIUM is None:
        # CI installs Chromium (.ci/run); there a missing browser is a failure, not a skip
        if os.environ.get("CI"):
            pytest.fail("no Chromium although CI should have installed it (apt-get install chromium)")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    url, proc, log = server
    timeout = 60_000  # ms: generous for a loaded 2-core machine
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            status = page.locator(".explore-status")
            expect(status).to_contain_text("map 1:", timeout=timeout)
            expect(status).to_contain_text("eps = 0.01,")
            the_map = page.locator(".explore-map").first
            the_time = page.locator(".explore-time").first
            map_before, time_before = the_map.screenshot(), the_time.screenshot()

            # move the eps slider one step with the keyboard: the map is recomputed
            page.locator(".explore-eps .noUi-handle").first.press("ArrowRight")
            expect(status).to_contain_text("map 2:", timeout=timeout)
            expect(status).to_contain_text("eps = 0.02,")
            # a large move changes the picture: eps = 1 loses most of the protected starts
            field = page.locator(".explore-eps input").first
            field.fill("1")
            field.press("Enter")
            expect(status).to_contain_text("eps = 1,", timeout=timeout)
            _wait_until(lambda: the_map.screenshot() != map_before, 30, "the redrawn map")

            # a click on the map integrates that start
            box = the_map.bounding_box()
            page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + 0.35 * box["height"])
            traj = page.locator(".explore-trajectory")
            expect(traj).to_contain_text("trajectory 1: start", timeout=timeout)
            _wait_until(lambda: the_time.screenshot() != time_before, 30, "the drawn time course")

            # bad values typed into fields are refused on the page, the map kept
            message = page.locator(".explore-message")
            field.fill("-1")
            field.press("Enter")
            expect(message).to_contain_text("eps must be > 0, got -1", timeout=timeout)
            expect(status).to_contain_text("eps = 1,")
            start = page.locator(".explore-start input").first
            start.fill("abc")
            start.press("Enter")
            expect(message).to_contain_text("start must be two finite numbers", timeout=timeout)
            field.fill("0.5")
            field.press("Enter")
            expect(status).to_contain_text("eps = 0.5,", timeout=timeout)
            expect(message).to_be_hidden(timeout=timeout)
        finally:
            browser.close()
    assert proc.poll() is None
    assert not errors, errors
    assert "Traceback" not in log.read_text(), log.read_text()


def test_page_draws_and_numbers_stay_apart():
    """The page draws only: it reaches the engine through the compute module, which knows
    nothing of the page (read from the source, not run)."""
    import ast

    def imports(name):
        tree = ast.parse((ROOT / "dynamics" / "explore" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                yield node.module
            elif isinstance(node, ast.Import):
                yield from (a.name for a in node.names)

    ui = set(imports("ui.py"))
    assert not [m for m in ui if m.startswith(("dynamics.solve", "dynamics.flow", "dynamics.engine",
                                               "dynamics.analysis", "dynamics.figures", "jax",
                                               "diffrax"))], ui
    assert "dynamics.explore" in ui  # (from dynamics.explore import compute)
    numbers = set(imports("compute.py"))
    assert not [m for m in numbers if m.split(".")[0] in ("panel", "bokeh", "matplotlib")], numbers
    assert not [m for m in numbers if m.startswith("dynamics.explore")], numbers
