"""``borgusb cellhost``: load the cells' code once and fork each cell (see the package docstring)."""

from __future__ import annotations

import argparse
import sys

from ..cells import implemented


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="borgusb cellhost",
        description="Load every cell's code once and run each cell as a forked "
        "process that shares it (one process per cell).",
    )
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="answer borgusb-cell@.service units on a socket (systemd mode)")
    serve.add_argument("--socket", required=True, help="where to listen")
    serve.add_argument("--cells", help="comma-separated cell types to preload (default: every implemented one)")
    run = sub.add_parser(
        "run",
        help="run and supervise the cells of one node (hosted mode, tests)",
        description="Fork every cell, restart any that fails, stop all on SIGTERM. Options "
        "after the cells are given to every `borgusb cell run`.",
    )
    run.add_argument("--cells", help="comma-separated cell types (default: every implemented one)")
    run.add_argument("--data-root", help="each cell's --data is DATA_ROOT/NAME")
    sub.add_parser("spawn", help="ask a serving host for one cell (what borgusb-cell@.service runs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["spawn"]:  # the stub parses its own arguments (and imports nothing else)
        from .spawn import main as spawn_main

        return spawn_main(argv[1:])
    args, common = build_parser().parse_known_args(argv)
    cells = [c for c in (args.cells or "").split(",") if c] or implemented()
    from .host import serve, supervise

    if args.cmd == "serve":
        if common:
            build_parser().error(f"unknown arguments: {' '.join(common)}")
        return serve(args.socket, cells)

    def per_cell(name: str) -> list[str]:
        return ["--data", f"{args.data_root}/{name}"] if args.data_root else []

    return supervise(cells, common, per_cell)


if __name__ == "__main__":
    sys.exit(main())
