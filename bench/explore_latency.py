"""How soon the live basin explorer redraws its map after a slider move, in a real browser.

    python bench/explore_latency.py                  # 64 x 64 and 128 x 128, 15 moves each
    python bench/explore_latency.py --moves 31 --json out.json
    python bench/explore_latency.py --rtol 1e-8 --atol 1e-10    # the sweep's step control
    python bench/explore_latency.py --check-labels   # labels at 1e-6 vs 1e-8, six settings

Serves ``python -m dynamics.explore`` in a subprocess, opens it in the system's Chromium
(Playwright, ``executable_path``: nothing is downloaded), picks the grid, then moves the
``eta`` slider one step with the keyboard, alternately right and left (0.15 <-> 0.155: every
move recomputes the map). Each move is timed in the page's own clock, from the ``keydown``
event to the first animation frame after the status line names the new map, plus one more
frame (the map's canvas repaints on the animation frame after its data arrive, with the status
line in the same message). Reports the median and 90th percentile, the server's own compute
time (map + theory overlay, from the status line: ``in X s``), the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dynamics.explore.browser import chromium_path, free_port  # noqa: E402

TARGETS = {64: 0.2, 128: 0.5}

# the status line's text, through the shadow roots Panel renders into
_STATUS_JS = """() => {
  const find = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.classList && el.classList.contains('explore-status')) return el;
      if (el.shadowRoot) { const f = find(el.shadowRoot); if (f) return f; }
    }
    return null;
  };
  const el = window.__status || (window.__status = find(document));
  return el ? (el.shadowRoot ? el.shadowRoot.textContent : el.textContent) : '';
}"""


def _chromium():
    path = chromium_path()
    if path is None:
        sys.exit("error: no Chromium on this machine (apt-get install chromium)")
    return path


def measure(page, size, moves):
    from playwright.sync_api import expect

    status = page.locator(".explore-status")
    page.locator(".explore-n select").first.select_option(label=f"{size} x {size}")
    expect(status).to_contain_text(f"{size} x {size} starts", timeout=300_000)
    handle = page.locator(".explore-eta .noUi-handle").first
    for warm in ("ArrowRight", "ArrowLeft"):  # first moves at this size: not timed
        n0 = int(re.search(r"map (\d+):", page.evaluate(_STATUS_JS)).group(1))
        handle.press(warm)
        expect(status).to_contain_text(f"map {n0 + 1}:", timeout=300_000)
    lat, server = [], []
    for k in range(moves):
        n0 = int(re.search(r"map (\d+):", page.evaluate(_STATUS_JS)).group(1))
        page.evaluate("""() => { window.__t0 = null; window.__seen = null; window.__done = null;
            window.addEventListener('keydown', () => { window.__t0 = performance.now(); },
                                    {capture: true, once: true}); }""")
        handle.press("ArrowRight" if k % 2 == 0 else "ArrowLeft")
        want = f"map {n0 + 1}:"
        done = page.wait_for_function(
            """([want, statusJs]) => {
                 if (window.__done) return [window.__done - window.__t0, window.__text];
                 const text = eval(statusJs)();
                 if (!window.__seen && text.includes(want)) {
                   window.__seen = performance.now();
                   window.__text = text;
                   requestAnimationFrame(() => { window.__done = performance.now(); });
                 }
                 return false;
               }""", arg=[want, _STATUS_JS], polling="raf", timeout=300_000).json_value()
        ms, text = done
        lat.append(ms / 1000.0)
        server.append(float(re.search(r" in ([\d.]+) s:", text).group(1)))
    return lat, server


#: settings on which the explorer's tolerances are compared with the sweep's (--check-labels)
LABEL_SETTINGS = (dict(eps=0.01), dict(eps=0.1, eta=0.05), dict(eps=0.5), dict(eps=1.0, sigma2=1.0),
                  dict(eps=0.05, variant="byol"), dict(eps=0.02, convention="tian"))


def check_labels(n=128):
    """The map at the explorer's step control against the sweep's (rtol 1e-8, atol 1e-10):
    lanes whose label differs, and the time of each (warm)."""
    from dynamics.explore import compute

    print(f"{'setting':<40} {'lanes':>6} {'differ':>6}  {'1e-6 s':>7}  {'1e-8 s':>7}")
    for changes in LABEL_SETTINGS:
        fast = compute.Settings(n=n, **changes)
        sweep = fast.replace(rtol=1e-8, atol=1e-10)
        for s in (fast, sweep):
            compute.basin(s)  # compile
        a, b = compute.basin(fast), compute.basin(sweep)
        print(f"{str(changes):<40} {a.outcome.size:>6} {int((a.outcome != b.outcome).sum()):>6}  "
              f"{a.seconds:>7.3f}  {b.seconds:>7.3f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moves", type=int, default=15, help="timed moves per grid size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--rtol", type=float, help="the map's rtol (default: the explorer's, 1e-6)")
    ap.add_argument("--atol", type=float, help="the map's atol (default: the explorer's, 1e-9)")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--check-labels", action="store_true",
                    help="instead: compare the map's labels at the explorer's and the sweep's "
                         "tolerances on six settings of 128 x 128 starts (no browser)")
    args = ap.parse_args(argv)
    if args.check_labels:
        return check_labels()
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    server = subprocess.Popen([sys.executable, "-m", "dynamics.explore", "--no-show", "--port",
                               str(port), "--n", "64",
                               *(["--rtol", str(args.rtol)] if args.rtol else []),
                               *(["--atol", str(args.atol)] if args.atol else [])],
                              env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://localhost:{port}/"
    t = time.monotonic()
    while True:
        if server.poll() is not None:
            sys.exit("error: the explorer did not start")
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if time.monotonic() - t > 300:
                sys.exit("error: the explorer did not answer in 300 s")
            time.sleep(0.2)
    load0 = os.getloadavg()
    cpu0 = os.times()
    results = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(),
                                        args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(url)
            page.locator(".explore-status").get_by_text("map 1:").wait_for(timeout=300_000)
            for size in args.sizes:
                lat, srv = measure(page, size, args.moves)
                results[size] = dict(
                    median_s=statistics.median(lat),
                    p90_s=sorted(lat)[int(0.9 * (len(lat) - 1))],
                    server_median_s=statistics.median(srv),
                    target_s=TARGETS.get(size), moves=len(lat), all_s=lat)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    load1 = os.getloadavg()
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    info = dict(rtol=args.rtol or 1e-6, atol=args.atol or 1e-9, machine=machine,
                load_before=load0, load_after=load1,
                bench_cpu_s=round(sum(os.times()[:4]) - sum(cpu0[:4]), 2))
    print(f"machine: {info['machine']}; load average {load0[0]:.2f} before, {load1[0]:.2f} after; "
          f"rtol {info['rtol']:g}, atol {info['atol']:g}")
    print(f"{'grid':>10}  {'median':>8}  {'p90':>8}  {'server':>8}  {'target':>7}  moves")
    for size, r in results.items():
        tgt = "" if r["target_s"] is None else f"{r['target_s']:.2f} s"
        print(f"{size:>4} x {size:<3}  {r['median_s']:>6.3f} s  {r['p90_s']:>6.3f} s  "
              f"{r['server_median_s']:>6.3f} s  {tgt:>7}  {r['moves']}")
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(info, results=results), indent=1))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
