"""``python -m dynamics.explore``: serve the live basin explorer on this machine."""

from __future__ import annotations

import argparse
import sys

from dynamics.runtime import enable_compilation_cache, split_cpu_cores


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dynamics.explore",
        description="Serve the live basin explorer of scalar SimSiam/BYOL: sliders for eps, "
                    "eta, sigma2, beta, the variant, the convention and the model; each move "
                    "recomputes the basin map with the fixed points and the separatrix; a click "
                    "on the map draws that start's trajectory.")
    p.add_argument("--port", type=int, default=5006, help="port to serve on (default 5006)")
    p.add_argument("--address", default="localhost",
                   help="address to listen on (default localhost: this machine only)")
    p.add_argument("--show", action=argparse.BooleanOptionalAction, default=True,
                   help="open the page in a browser (default: yes)")
    p.add_argument("--n", type=int, default=64,
                   help="starts along each axis of the first map (default 64)")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance of the map's step control (default 1e-6; the "
                        "sweep's is 1e-8)")
    p.add_argument("--atol", type=float, default=None,
                   help="absolute tolerance of the map's step control (default 1e-9; the "
                        "sweep's is 1e-10)")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    split_cpu_cores()  # before any JAX computation: one device per core for the engine
    from dynamics.explore import Settings, _ui

    try:
        tol = {k: getattr(args, k) for k in ("rtol", "atol") if getattr(args, k) is not None}
        settings = Settings(n=args.n, **tol)
    except ValueError as e:
        parser.error(f"--{e}")
    try:
        ui = _ui()
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.no_compile_cache:
        enable_compilation_cache()
    # compile before serving: the first page opens at once
    ui.Explorer(settings).show_trajectory(0.5, 0.3)
    import panel as pn

    url = f"http://{args.address}:{args.port}/"
    print(f"the basin explorer: {url} (Ctrl-C stops it)", flush=True)
    pn.serve({"/": lambda: ui.app(settings)}, port=args.port, address=args.address,
             websocket_origin=[f"{args.address}:{args.port}", f"localhost:{args.port}",
                               f"127.0.0.1:{args.port}"],
             show=args.show, title="dynamics: basin explorer", threaded=False, print=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
