"""Mutation check: plant one plausible bug at a time and see which tests catch it.

    python tests/mutation.py               # every mutation in MUTATIONS
    python tests/mutation.py classify-phi  # only the named ones
    python tests/mutation.py --list        # the table, nothing run

Not collected by pytest (no ``test_`` prefix) and not part of CI: it takes a while (one pytest
run per mutation, on the test files that mutation is expected to touch). For every mutation the
project is copied to a temporary directory, the edit is applied there (each snippet must occur
exactly once, so a stale table fails loudly instead of testing nothing), and pytest runs in the
copy, which then shadows the installed package. A mutation that no test fails is a hole in the
suite. A clean run of the same test files comes first: a test that fails without any mutation
says nothing about the mutations.

The table is data: when code moves, retarget a row by editing its file and snippet only.

Last full run (every row caught; failing tests, and the clearest miss against its check)::

    classify-phi                       2   label 1 where 0 is expected (exact comparison)
    classify-no-saddle                 1   saddle lane decided (exact comparison)
    tian-convention-swapped            3   eta_phi off by 0.099 at rtol 1e-15
    eta-param-swapped                  2   branch off by 0.34 at atol 1e-12
    byol-ema-rate                      7   GD step off by 0.24 at atol 1e-12
    byol-ema-old-encoder               5   GD step off by 6.3e-3 at atol 1e-12
    gd-predictor-step                 10   GD step off by 19 at atol 1e-12
    unroll-key-offset                  1   unrolled SGD off by 7.0e-3 at atol 1e-14
    relaxation-max                     1   rate off by 161 at rtol 1e-13
    reduced-shared-manifold            1   manifold off by 0.061 at atol 1e-6
    critical-manifold-wrong-equation   5   manifold off by 0.43 at rtol 1e-13
    dopri5-stage-typo                 11   fixed-step order 0.61 (bound > 4.7)
    dopri5-weight-typo                10   end state off by 2.2e-3 at atol 5e-9
    dopri5-error-typo                  7   lanes hit max_steps; order and work-precision fail
    rodas4-typo                       11   fixed-step order 1.34 (bound > 3.2)
    rodas5p-typo                       3   first-order condition off by 1.1e-3 (bound 1e-12);
                                           local order ~1 (bound 5.5-6.5); stiff lanes hit
                                           max_steps
    nosg-target-sign                   6   field off by 3.6 at atol 1e-12
    noise-std-as-variance              1   SGD seed mean off by 0.059, bound 3.7e-3
    linear-sweep-second-moment         2   surviving modes miss the closed form
    linear-sweep-count-all             2   collapsed-mode count off by 2 (exact)
    gd-segments-drop-remainder         2   end state off by 7.9e-3 at rtol 1e-12 (7 steps short)
    chunk-status-from-padded-end       1   lane 6 labelled nonfinite (exact comparison)
    engine-flow-status-from-padded-end 1   lane 3 labelled nonfinite (exact comparison)
    engine-discrete-status-from-padded-end
                                       1   lane 3 labelled nonfinite (exact comparison)
    isoloss-euclidean-discriminant-sign
                                       2   s* off by 0.18 at rtol 1e-12 below the fold
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache",
                                     "figures", "notes", "bench", "notebooks", "sweep_results")


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    edits: tuple  # ((file, exact snippet, replacement), ...)
    tests: tuple  # pytest arguments: files, node ids, "-k" expressions


def M(name, description, edits, tests):
    return Mutation(name, description, tuple(edits), tuple(tests))


# the engine's numerical tests (not its device, cache and bad-input plumbing)
ENGINE_ACCURACY = ["tests/test_engine.py", "-k",
                   "diffrax or invariant or order or precision or too_few or chunks or diverging"]

MUTATIONS = [
    M("classify-phi",
      "collapse threshold applied to |phi| instead of |theta|",
      [("dynamics/classify.py",
        "enc_norm = jnp.max(jnp.atleast_1d(model.encoder_norm(y_safe.enc)))",
        "enc_norm = jnp.max(jnp.atleast_1d(model.encoder_norm(y_safe.pred)))")],
      ["tests/test_classify.py", "tests/test_scalar_dynamics.py", "-k", "classify or collapse or su_"]),
    M("classify-no-saddle",
      "saddle exclusion dropped: decided = converged",
      [("dynamics/classify.py",
        "decided = converged & (small | (lam_max <= criterion.jtol))",
        "decided = converged")],
      ["tests/test_classify.py", "tests/test_scalar_dynamics.py", "-k", "classify or collapse or saddle"]),
    M("tian-convention-swapped",
      "Hyper.from_convention('tian') gives eta_phi = eta",
      [("dynamics/types.py",
        'if convention == "tian":\n            return cls(eps=eps, eta_theta=eta, eta_phi=eps * eta,',
        'if convention == "tian":\n            return cls(eps=eps, eta_theta=eta, eta_phi=eta,')],
      ["tests/test_sweep_cli.py", "tests/test_analysis.py", "-k", "tian or convention or continuation"]),
    M("eta-param-swapped",
      "continuation's eta_param swaps the conventions",
      [("dynamics/analysis/continuation.py",
        'eta_phi = h.eps * eta if self.convention == "tian" else eta',
        'eta_phi = eta if self.convention == "tian" else h.eps * eta')],
      ["tests/test_analysis.py", "-k", "continuation or bifurcation"]),
    M("byol-ema-rate",
      "BYOL's EMA momentum 1 - beta (the step size forgotten)",
      [("dynamics/flow.py", "m = 1.0 - hyper.beta * lr", "m = 1.0 - hyper.beta")],
      ["tests/test_scalar_fields.py", "tests/test_scalar_dynamics.py", "tests/test_engine.py",
       "-k", "gd_step or discrete or order_one or hand_written"]),
    M("byol-ema-old-encoder",
      "BYOL's EMA follows the old encoder instead of the updated one",
      [("dynamics/flow.py",
        "tgt = _tmap(lambda wa, w: m * wa + (1.0 - m) * w, state.tgt, enc)",
        "tgt = _tmap(lambda wa, w: m * wa + (1.0 - m) * w, state.tgt, state.enc)")],
      ["tests/test_scalar_fields.py", "tests/test_scalar_dynamics.py", "tests/test_engine.py",
       "-k", "gd_step or discrete or order_one or hand_written"]),
    M("gd-predictor-step",
      "discrete predictor step lr instead of lr/eps",
      [("dynamics/flow.py",
        "lambda w, g_: w - (lr / hyper.eps) * (g_ + hyper.eta_phi * w), state.pred, g.pred",
        "lambda w, g_: w - lr * (g_ + hyper.eta_phi * w), state.pred, g.pred")],
      ["tests/test_scalar_fields.py", "tests/test_scalar_dynamics.py", "tests/test_engine.py",
       "-k", "gd_step or discrete or order_one or hand_written or source_post"]),
    M("unroll-key-offset",
      "the engine's unrolled discrete loop samples step k with fold_in(key, k + 1)",
      [("dynamics/solve/engine.py",
        "batch = None if batch_size is None else m.sample(jax.random.fold_in(key, k), batch_size)",
        "batch = None if batch_size is None else m.sample(jax.random.fold_in(key, k + 1), batch_size)")],
      ["tests/test_engine.py", "-k", "discrete"]),
    M("relaxation-max",
      "slow-fast relaxation_rate takes the max instead of the min eigenvalue",
      [("dynamics/analysis/slowfast.py",
        "return jnp.min(-jnp.real(jnp.linalg.eigvals(J)))",
        "return jnp.max(-jnp.real(jnp.linalg.eigvals(J)))")],
      ["tests/test_analysis.py", "-k", "relaxation or critical or reduced or slow"]),
    M("reduced-shared-manifold",
      "full-vs-reduced comparison ignores eta_phi_of_eps for the reduced runs",
      [("dynamics/analysis/slowfast.py",
        "red = _solve_lanes(stack(reduced_list), stack([slow0] * len(eps)),",
        "red = _solve_lanes(stack(reduced_list[:1] * len(eps)), stack([slow0] * len(eps)),")],
      ["tests/test_analysis.py", "-k", "reduced"]),
    M("critical-manifold-wrong-equation",
      "critical manifold solved from the encoder's equation",
      [("dynamics/analysis/slowfast.py",
        "return vector_field(model, variant, hyper, State(enc, p, tgt)).pred",
        "return vector_field(model, variant, hyper, State(enc, p, tgt)).enc")],
      ["tests/test_analysis.py", "-k", "relaxation or critical or reduced or slow"]),
    M("dopri5-stage-typo",
      "Dormand-Prince coefficient typo in a stage (a43 = 32/9 -> 32/8)",
      [("dynamics/solve/tableaus.py", "(44 / 45, -56 / 15, 32 / 9),", "(44 / 45, -56 / 15, 32 / 8),")],
      ENGINE_ACCURACY),
    M("dopri5-weight-typo",
      "Dormand-Prince coefficient typo in the 5th-order weights (b3 = 500/1113 -> 500/1131)",
      [("dynamics/solve/tableaus.py",
        "(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),",
        "(35 / 384, 0.0, 500 / 1131, 125 / 192, -2187 / 6784, 11 / 84),")],
      ENGINE_ACCURACY),
    M("dopri5-error-typo",
      "Dormand-Prince coefficient typo in the error estimate (e4 = 71/1920 -> 71/1290)",
      [("dynamics/solve/tableaus.py", "    71 / 1920,\n", "    71 / 1290,\n")],
      ENGINE_ACCURACY),
    M("rodas4-typo",
      "Rodas4 coefficient typo (a21 = 1.544 -> 1.545)",
      [("dynamics/solve/tableaus.py", "    (1.544,),\n", "    (1.545,),\n")],
      ENGINE_ACCURACY),
    M("rodas5p-typo",
      "Rodas5P coefficient typo (C21 = -14.1551... -> -14.2551...)",
      [("dynamics/solve/tableaus.py", "    (-14.155112264123755,),\n",
        "    (-14.255112264123755,),\n")],
      ["tests/test_solve_rosenbrock.py"]),
    M("nosg-target-sign",
      "sign flip of the target-branch gradient in BYOL without stop-gradient",
      [("dynamics/flow.py",
        "d_tgt = _tmap(lambda d, g_: d - g_, d_tgt, g.tgt)",
        "d_tgt = _tmap(lambda d, g_: d + g_, d_tgt, g.tgt)")],
      ["tests/test_scalar_fields.py", "tests/test_engine.py", "-k", "field or jacobian or order or precision"]),
    M("noise-std-as-variance",
      "augmentation noise drawn with std sigma2 instead of sqrt(sigma2)",
      [("dynamics/models/scalar.py",
        "s = jnp.sqrt(jnp.asarray(self.sigma2, dtype))",
        "s = jnp.asarray(self.sigma2, dtype)")],
      ["tests/test_scalar_dynamics.py", "tests/test_scalar_fields.py", "tests/test_engine.py",
       "-k", "sgd or gd_step or discrete"]),
    M("linear-sweep-second-moment",
      "matrix sweep builds X' = (1 + sigma2) I (the second moment) instead of sigma2 I",
      [("dynamics/sweep/matrix.py",
        "sigma2[:, None, None] * jnp.eye(n1)[None])",
        "(1 + sigma2[:, None, None]) * jnp.eye(n1)[None])"),
       ("dynamics/sweep/matrix.py",
        "sigma2[:, None] * jnp.ones((1, n1)))",
        "(1 + sigma2[:, None]) * jnp.ones((1, n1)))")],
      ["tests/test_linear_sweep.py"]),
    M("linear-sweep-count-all",
      "matrix sweep counts a mode collapsed below 1 instead of below collapse_tol",
      [("dynamics/sweep/matrix.py",
        "collapse_summary(jnp.asarray(sv), config.collapse_tol)",
        "collapse_summary(jnp.asarray(sv), 1.0)")],
      ["tests/test_linear_sweep.py"]),
    M("gd-segments-drop-remainder",
      "a gd/sgd run's first segment drops the remainder steps, so it stops short of t1",
      [("dynamics/sweep/core.py",
        "return n_steps - length * (count - 1), length, count",
        "return length, length, count")],
      ["tests/test_sweep_api.py", "-k", "segments or every_step"]),
    M("chunk-status-from-padded-end",
      "a sweep chunk's per-lane status read from the padded end of the chunk",
      [("dynamics/sweep/core.py",
        "status[iv, im, ie].reshape(-1)[start:start + m] = st[:m]",
        "status[iv, im, ie].reshape(-1)[start:start + m] = st[-m:]")],
      ["tests/test_sweep_api.py", "-k", "padded"]),
    M("engine-flow-status-from-padded-end",
      "the engine's flow reads a chunk's per-lane status from its padded end",
      [("dynamics/solve/engine.py",
        "status[idx] = np.asarray(st)[:k]",
        "status[idx] = np.asarray(st)[-k:]")],
      ["tests/test_solve_batch.py", "-k", "padded"]),
    M("engine-discrete-status-from-padded-end",
      "the engine's gd/sgd reads a chunk's per-lane status from its padded end",
      [("dynamics/solve/engine.py",
        "stats.append(np.asarray(st)[: idx.size])",
        "stats.append(np.asarray(st)[-idx.size:])")],
      ["tests/test_solve_batch.py", "-k", "padded"]),
    M("isoloss-euclidean-discriminant-sign",
      "the Euclidean loss's saddle-node fixed point with the discriminant 1 + 4 a eta",
      [("dynamics/models/isoloss.py",
        "disc = 1.0 - 4.0 * a * eta",
        "disc = 1.0 + 4.0 * a * eta")],
      ["tests/test_isoloss.py", "-k", "fold or closed_form"]),
]


def apply(tree: Path, mutation: Mutation) -> None:
    for file, find, replace in mutation.edits:
        path = tree / file
        text = path.read_text()
        count = text.count(find)
        if count != 1:
            raise SystemExit(f"{mutation.name}: snippet found {count} times in {file}: {find!r}")
        path.write_text(text.replace(find, replace))


def copy_tree(dest: Path) -> Path:
    tree = dest / "tree"
    shutil.copytree(ROOT, tree, ignore=COPY_IGNORE)
    return tree


_FAILED = re.compile(r"^(FAILED|ERROR) (\S+?)(?: - (.*))?$")
_SECTION = re.compile(r"^_{3,} (\S.*?) _{3,}$")


def _why(e_lines, short):
    """The lines of a failure that say by how much: numpy's tolerance and largest difference,
    else the assertion itself."""
    keep = [l for l in e_lines if "tolerance" in l or l.startswith("Max ")]
    if not keep:
        keep = [l for l in e_lines if l][:2] or [short]
    return " | ".join(keep)


def run_pytest(tree: Path, args, cache: Path, timeout: float):
    # one compilation cache for every run (the suite's conftest uses the one it is handed);
    # a mutant's programs differ from the clean tree's, and so do their cache keys
    env = dict(os.environ, DYNAMICS_TEST_JAX_CACHE=str(cache), MPLBACKEND="Agg", COLUMNS="400")
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        out, rc = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1
    details, current = {}, None
    for line in out.splitlines():
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
            details[current] = []
        elif current is not None and line.startswith("E "):
            details[current].append(line[1:].strip())
    failed = {}
    for line in out.splitlines():
        m = _FAILED.match(line.strip())
        if m:
            node = m.group(2)
            failed[node] = _why(details.get(node.split("::")[-1], []), m.group(3) or "")
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    return rc, failed, summary, time.perf_counter() - t0


def check_shadowing(tree: Path) -> None:
    """The copy, not the installed package, must be what the tests import."""
    r = subprocess.run([sys.executable, "-c", "import dynamics; print(dynamics.__file__)"],
                       cwd=tree, capture_output=True, text=True, timeout=120)
    where = Path(r.stdout.strip()).resolve()
    if tree.resolve() not in where.parents:
        raise SystemExit(f"the copy does not shadow the installed package: dynamics is {where}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="mutations to run (default: all)")
    p.add_argument("--list", action="store_true", help="print the table and exit")
    p.add_argument("--no-baseline", action="store_true", help="skip the clean runs")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run")
    args = p.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        p.error(f"unknown mutation(s) {', '.join(unknown)}: expected some of {', '.join(known)}")
    chosen = [known[n] for n in args.names] if args.names else MUTATIONS
    if args.list:
        for m in chosen:
            print(f"{m.name:<34} {m.description}\n{'':<34} tests: {' '.join(m.tests)}")
        return 0

    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "jax-cache"
        cache.mkdir()
        clean = copy_tree(tmp / "clean")
        check_shadowing(clean)
        for m in chosen:  # every snippet must be found before anything runs
            apply(copy_tree(tmp / f"check-{m.name}"), m)
            shutil.rmtree(tmp / f"check-{m.name}")
        if not args.no_baseline:
            for tests in sorted({m.tests for m in chosen}):
                rc, failed, summary, secs = run_pytest(clean, tests, cache, args.timeout)
                print(f"clean  {' '.join(tests)}: {summary} ({secs:.0f} s)", flush=True)
                if failed or rc not in (0, 5):
                    print("  the clean tree fails these tests; their results below mean nothing:")
                    for node, why in failed.items():
                        print(f"    {node}  {why[:160]}")
        rows = []
        for m in chosen:
            tree = copy_tree(tmp / m.name)
            apply(tree, m)
            rc, failed, summary, secs = run_pytest(tree, m.tests, cache, args.timeout)
            rows.append((m, failed, summary))
            print(f"\n[{m.name}] {m.description}  ({secs:.0f} s; {summary})", flush=True)
            for node, why in failed.items():
                print(f"    FAILS {node}\n          {why[:300]}")
            if not failed:
                print("    NOT CAUGHT: no test failed")
            shutil.rmtree(tmp / m.name)
        print("\nsummary")
        for m, failed, _ in rows:
            print(f"  {m.name:<34} {len(failed):>3} failing test(s)" + ("" if failed else "  <- not caught"))
        return 0 if all(failed for _, failed, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
