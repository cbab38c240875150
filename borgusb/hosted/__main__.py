"""`borgusb hosted`: run BorgUSB from a stick plugged into this running Linux PC.

Runs in the foreground; Ctrl-C or SIGTERM stops everything it started. Needs
root for its private mount namespace and to read the stick's block device
(sudo); it alone stays root: the cells and conduits it starts run as users of
their own with no capabilities. The launcher on the stick
(``sh /media/…/BORGUSB/borgusb-hosted``) uses the stick where the desktop
mounted it instead, which also works without root, and runs from a copy in
RAM checked against the stick's build (``--code-dir``, bootstrap.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..clitools import port_number


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="borgusb hosted",
        description="Watch for BorgUSB sticks (pyudev): on insertion start the node and the conduit on "
        "localhost with all state in RAM; on removal stop them and leave nothing behind.",
    )
    p.add_argument("--port", type=port_number(), default=8088, help="first local port for the conduits (default 8088)")
    p.add_argument(
        "--node-ip", metavar="IP", help="address for the node's cells (default: the default-route interface)"
    )
    p.add_argument(
        "--join",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a contact for the node to join through (repeatable; added to the stick's own)",
    )
    p.add_argument("--cells", metavar="A,B", help="cell types to run (default: every one this version implements)")
    p.add_argument("--open", action="store_true", help="open the conduit address in the default browser")
    p.add_argument(
        "--stick-dir",
        type=Path,
        metavar="DIR",
        help="use the stick already mounted at DIR (what the launcher on the stick does)",
    )
    p.add_argument(
        "--idle-lock", type=float, default=10.0, metavar="MIN", help="lock the wallet after MIN idle minutes"
    )
    p.add_argument("--ram-size", default="256m", help="size of the private RAM directory (tmpfs, default 256m)")
    p.add_argument(
        "--code-dir",
        type=Path,
        metavar="DIR",
        help="the checked copy in RAM this runs from (given by the launcher on the stick; removed at the end)",
    )
    return p


def _reexec_without_bytecode(argv: list[str]) -> None:
    """No .pyc may be written on the host: run again under -B if this interpreter would write them."""
    if sys.flags.dont_write_bytecode or os.environ.get("BORGUSB_HOSTED_REEXEC"):
        return
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "BORGUSB_HOSTED_REEXEC": "1"}
    os.execve(sys.executable, [sys.executable, "-B", "-P", "-m", "borgusb.hosted", *argv], env)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    sys.dont_write_bytecode = True
    args = build_parser().parse_args(argv)
    _reexec_without_bytecode(argv)
    os.environ.pop("BORGUSB_HOSTED_REEXEC", None)
    # Everything needed later is imported now: the code may live on the stick, which can vanish.
    import shutil  # noqa: F401
    import webbrowser  # noqa: F401

    import aiohttp  # noqa: F401
    import pyudev  # noqa: F401

    from .. import keystore  # noqa: F401
    from ..node import default_ip  # noqa: F401
    from . import mounts, stickwrite, users  # noqa: F401
    from .watcher import MemoryLog, Options, Watcher, install_signal_handlers

    opts = Options(
        port=args.port,
        node_ip=args.node_ip,
        join=args.join,
        cells=[c for c in args.cells.split(",") if c] if args.cells else None,
        open_browser=args.open,
        stick_dir=args.stick_dir,
        idle_lock_min=args.idle_lock,
        ram_size=args.ram_size,
        code_dir=args.code_dir,
        test_drop_events=tuple(a for a in os.environ.get("BORGUSB_HOSTED_TEST_DROP_EVENTS", "").split(",") if a),
    )
    log = MemoryLog()
    watcher = Watcher(opts, log)
    install_signal_handlers(watcher)
    try:
        watcher.setup()
        return watcher.run()
    except KeyboardInterrupt:
        return 130
    finally:
        watcher.teardown()
        log(f"BORGUSB-HOSTED-EXIT: every process stopped, RAM directory removed; refused: {watcher.refusal_summary()}")


if __name__ == "__main__":
    sys.exit(main())
