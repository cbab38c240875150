"""The `borgusb cluster` command: start, watch, kill and stop a local cluster (cluster.py runs it).

`up` without --cell starts what a person needs to try BorgUSB on one computer: each address
one machine running every implemented cell type, so Home, Files and Pay all find their cells.
Each refusal says what to do next and exits with the shared codes (clitools.EXIT_CODES).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

from .cells import spec
from .clitools import EXIT_CODES, EXIT_FAIL, EXIT_OK, START_ONE
from .cluster import ALL, DEFAULT_DIR, Cluster, NodeProc, summarize

MAX_NODES = 250  # 127.0.0.2 onwards; more would spill past 127.0.0.255 into 127.0.1.x
DATA_NOTE = "the cells' data (stored files, payments) is deleted when the cluster stops ('borgusb cluster down')"


class NodeFailed(Exception):
    """A node's process ended while the cluster was starting."""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"{value}: from 1 to {MAX_NODES} nodes")
    return value


def _cell_type(text: str) -> str:
    """--cell NAME: refused at once when this version has no such cell (with the reason and the list)."""
    if text == ALL:
        return ALL
    try:
        return spec(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    # --name and --dir are accepted before or after the command: the subparsers' copies leave the
    # value alone unless given (SUPPRESS), so `cluster --name x up` and `cluster up --name x` agree
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--name", default=argparse.SUPPRESS, help="cluster name (several can coexist)")
    where.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=f"state directory (default {DEFAULT_DIR})")
    parser = argparse.ArgumentParser(
        prog="borgusb cluster",
        description="A local cluster of real node processes, one machine per loopback address.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--name", default="default", help="cluster name (several can coexist)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    up = sub.add_parser(
        "up",
        parents=[where],
        help="start nodes (127.0.0.2, .3, ...), each running every cell type, and wait until they form one tree",
        description=f"Start nodes on 127.0.0.2, .3, ...: each is one machine running every cell type. "
        f"Note: {DATA_NOTE}.",
    )
    up.add_argument("--nodes", type=_count, required=True, metavar="N")
    up.add_argument(
        "--cell",
        type=_cell_type,
        default=ALL,
        metavar="NAME",
        help="run only this cell type on each node (tests of one type; see 'borgusb cell list')",
    )
    up.add_argument("--heartbeat-ms", type=int, default=1000)
    up.add_argument("--base", type=int, default=2, help="first address is 127.0.0.BASE (default 2)")
    up.add_argument("--join", action="append", default=None, metavar="HOST", help="contacts for the new nodes")
    up.add_argument("--no-wait", action="store_true", help="return without waiting for one tree")
    st = sub.add_parser("status", parents=[where], help="positions, parents, children, root and depth")
    st.add_argument("--json", action="store_true")
    kill = sub.add_parser("kill", parents=[where], help="kill nodes at random (SIGKILL)")
    kill.add_argument("--count", type=int, default=1)
    kill.add_argument("--root", action="store_true", help="include the root")
    sub.add_parser(
        "down",
        parents=[where],
        help="stop every node of the cluster and forget it: the data its cells stored (files, payments) is deleted",
    )
    return parser


def _print_summary(summary: dict[str, Any]) -> None:
    state = "one consistent tree" if summary["consistent"] else "NOT consistent"
    print(f"{summary['size']} nodes, {state}, depth {summary['depth']}, root {', '.join(summary['roots']) or '-'}")
    print(f"{'pos':>4}  {'ip':<15} {'status':<8} {'parent':<15} {'children':>8}")
    for n in summary["nodes"]:
        pos, status, parent = n["position"] or "-", n["status"] or "-", n["parent"] or "-"
        print(f"{pos:>4}  {n['ip']:<15} {status:<8} {parent:<15} {n['children']:>8}")
    for p in summary["problems"]:
        print(f"  ! {p}")


def _not_running(args: argparse.Namespace) -> int:
    named = "" if args.name == "default" else f" --name {args.name}"
    print(f"borgusb cluster: no cluster {args.name!r} runs: start one with '{START_ONE}{named}'", file=sys.stderr)
    return EXIT_FAIL


def _log_tail(node: NodeProc) -> str:
    try:
        lines = [ln for ln in Path(node.log).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "nothing in its log"


async def _wait(cluster: Cluster, timeout_s: float) -> dict[str, Any]:
    """One consistent tree per cell type, or NodeFailed as soon as a node's process is gone."""
    task = asyncio.ensure_future(cluster.wait_one_tree(timeout_s=timeout_s, expect=len(cluster.nodes)))
    while not task.done():
        dead = [n for n in cluster.nodes if not n.running()]
        if dead:
            task.cancel()
            raise NodeFailed(f"the node on {dead[0].ip} stopped: {_log_tail(dead[0])} (log: {dead[0].log})")
        await asyncio.wait([task], timeout=0.5)
    return task.result()


def cmd_up(args: argparse.Namespace, cluster: Cluster) -> int:
    if cluster.live():
        running = ", ".join(n.ip for n in cluster.live())
        named = "" if args.name == "default" else f" --name {args.name}"
        print(
            f"borgusb cluster: the cluster {args.name!r} already runs ({running}); nothing was changed. "
            f"Stop it with 'borgusb cluster down{named}', or start another one with --name OTHER",
            file=sys.stderr,
        )
        return EXIT_FAIL
    cluster.down()  # what a crashed run left behind: its state file and data
    others: set[str] = set()
    for state in args.dir.glob("*/state.json"):
        if state.parent.name != args.name:
            try:
                others |= {n.ip for n in Cluster.load(state.parent.name, args.dir).live()}
            except (OSError, ValueError, KeyError, TypeError):
                continue
    cluster.cell, cluster.heartbeat_ms = args.cell, args.heartbeat_ms
    started = cluster.up(args.nodes, base=args.base, join=args.join, avoid=others)
    print(f"cluster {args.name!r}: {len(started)} nodes on {started[0].ip} … {started[-1].ip}, each running")
    print(f"  {', '.join(cluster.cell_types)}")
    print(f"  logs in {cluster.dir}; {DATA_NOTE}")
    if args.no_wait:
        return EXIT_OK
    try:
        summary = asyncio.run(_wait(cluster, timeout_s=60 + 2 * args.nodes))
    except NodeFailed as exc:
        cluster.down()
        print(f"borgusb cluster: {exc}; the cluster was stopped", file=sys.stderr)
        return EXIT_FAIL
    except TimeoutError as exc:
        print(f"borgusb cluster: {exc}", file=sys.stderr)
        print("the nodes keep running: 'borgusb cluster status' shows them, 'borgusb cluster down' stops them")
        return EXIT_FAIL
    _print_summary(summary)
    return EXIT_OK


def cmd_status(args: argparse.Namespace, cluster: Cluster) -> int:
    if not cluster.live():
        return _not_running(args)
    by_cell = {cell: summarize(asyncio.run(cluster.status(cell=cell))) for cell in cluster.cell_types}
    first = by_cell[cluster.cell_types[0]]
    consistent = all(s["consistent"] for s in by_cell.values())
    if args.json:
        brief = {cell: {"consistent": s["consistent"], "size": s["size"]} for cell, s in by_cell.items()}
        print(json.dumps(dict(first, cells=brief), indent=2))
    else:
        _print_summary(first)
        for cell, s in list(by_cell.items())[1:]:
            print(f"{cell}: {s['size']} nodes, {'one consistent tree' if s['consistent'] else 'NOT consistent'}")
            for p in s["problems"]:
                print(f"  ! {p}")
    return EXIT_OK if consistent else EXIT_FAIL


def cmd_kill(args: argparse.Namespace, cluster: Cluster) -> int:
    live = cluster.live()
    if not live:
        return _not_running(args)
    docs = asyncio.run(cluster.status())
    root_ips = {d["ip"] for d in docs if d.get("tree", {}).get("status") == "root"}
    victims = [n for n in live if n.ip in root_ips] if args.root else []
    others = [n for n in live if n not in victims]
    victims += random.sample(others, max(0, min(len(others), args.count - len(victims))))
    for node in victims:
        cluster.kill(node)
    print("killed " + ", ".join(n.ip for n in victims))
    return EXIT_OK


def cmd_down(args: argparse.Namespace, cluster: Cluster) -> int:
    if not cluster.nodes:
        cluster.down()
        print(f"no cluster {args.name!r} runs; nothing to stop")
        return EXIT_OK
    print(f"stopped {cluster.down()} nodes; their data (stored files, payments) is deleted")
    return EXIT_OK


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cluster = Cluster.load(args.name, args.dir)
    commands = {"up": cmd_up, "status": cmd_status, "kill": cmd_kill, "down": cmd_down}
    return commands[args.cmd](args, cluster)
