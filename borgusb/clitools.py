"""What the commands that talk to the network share: one exit-code scheme, finding a running
node by themselves, and failures said in words a person can act on.

`put/get/stat/rm`, `pay` and `conduit` used to each find a node and map errors their own way,
with different exit codes for the same failure and Python's exception names in the messages.
This module is imported by `borgusb --help` (for the exit codes), so it imports only the
standard library at the top; the network and cluster modules load when a node is looked for.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_CODES = (
    "Exit codes, the same for every command: 0 done; 1 refused or failed (the reason is printed); "
    "2 usage or bad input (nothing was sent); 3 no node reachable (start one, or name one with --node)."
)
START_ONE = "borgusb cluster up --nodes 5"  # what to run when no node runs here (5: what an account needs)
NAME_ONE = "name a running node with --node IP (or $BORGUSB_NODE)"


class CLIError(Exception):
    """A failure to report to the person in one line, without a traceback, and its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def port_number(low: int = 1) -> Callable[[str], int]:
    """An argparse type: a TCP port (low..65535), so `--port 80000` is a usage error, not a traceback."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"{value} is not a port number ({low} to 65535)")
        return value

    return parse


def add_wallet_options(parser: argparse.ArgumentParser, cell: str, keystore_help: str, timeout_help: str) -> None:
    """The options every command that talks to a cell for the person's wallet takes: the node (default
    $BORGUSB_NODE, else found), the wallet (keystore, its passphrase file, or a plain key file), the
    timeout and machine-readable output."""
    parser.add_argument(
        "--node",
        metavar="IP",
        default=os.environ.get("BORGUSB_NODE") or None,
        help=f"the {cell} to talk to (default $BORGUSB_NODE, else a local cluster's, else this machine's)",
    )
    parser.add_argument("--keystore", help=keystore_help)
    parser.add_argument("--passphrase-file", help="keystore passphrase from the first line of FILE")
    parser.add_argument("--key-file", help="a plain key file (created if missing); for scripts")
    parser.add_argument("--timeout", type=float, default=30.0, help=timeout_help)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def require_wallet(args: argparse.Namespace, why: str) -> None:
    """A wallet command's key is given: an existing keystore (checked before any passphrase is
    asked) or a key file; else a usage error that says `why` the wallet is needed."""
    if args.keystore:
        existing_keystore(args.keystore)
    elif not args.key_file:
        raise CLIError(f"{why}: give --keystore PATH (or --key-file)", EXIT_USAGE)


def existing_keystore(path: str | Path) -> Path:
    """The keystore named, checked before any passphrase is asked: nobody types one for a missing file."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{path} is a directory, not a keystore: name the keystore file", EXIT_USAGE)
    if not path.exists():
        raise CLIError(
            f"no keystore at {path}: create a wallet with 'borgusb wallet new --keystore {path}' "
            f"(or restore one from its words with 'borgusb wallet restore --keystore {path}')",
            EXIT_USAGE,
        )
    return path


# ---------------------------------------------------------------- finding a node


def answers(ip: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts a connection at ip:port (the cell's own door checks the rest)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def local_cluster_nodes(cell: str | None = None) -> tuple[list[str], list[str]]:
    """(live addresses of local clusters that run `cell` (None: any), notes on clusters that do not).

    Read from the state files `borgusb cluster` keeps under $BORGUSB_CLUSTER_DIR; a cluster
    started without --cell runs every cell type on each address, as a machine does."""
    from .cluster import ALL, DEFAULT_DIR, Cluster

    ips: list[str] = []
    others: list[str] = []
    try:
        names = sorted((p.parent.name for p in DEFAULT_DIR.glob("*/state.json")), key=lambda n: (n != "default", n))
    except OSError:
        return ips, others
    for name in names:
        try:
            cluster = Cluster.load(name, DEFAULT_DIR)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a state file being rewritten or from another version: not ours to judge
        live = [n.ip for n in cluster.live()]
        if cell is None or cluster.cell in (cell, ALL):
            ips += live
        elif live:
            others.append(f"the local cluster {name!r} runs only {cluster.cell}")
    return list(dict.fromkeys(ips)), others


def machine_ips() -> list[str]:
    """This machine's own node: a booted stick or hosted node listens on the default-route address."""
    from .node import default_ip

    return list(dict.fromkeys(["127.0.0.1", default_ip()]))


def find_node(cell: str, port: int) -> str:
    """The address of a running `cell` on this machine: a local cluster's first, then the machine's own.

    Raises CLIError (exit 3) saying what was tried and what to start."""
    ips, others = local_cluster_nodes(cell)
    tried = list(dict.fromkeys(ips + machine_ips()))
    for ip in tried:
        if answers(ip, port):
            return ip
    note = f" ({'; '.join(others)})" if others else ""
    raise CLIError(
        f"no {cell} runs on this machine (tried {', '.join(f'{ip}:{port}' for ip in tried)}){note}. "
        f"Start a local network with '{START_ONE}', or {NAME_ONE}",
        EXIT_UNREACHABLE,
    )


def find_nodes() -> list[str]:
    """Every node running here that answers on some cell's receptor: the local clusters' live
    nodes, then the machine's own (the conduit's seeds when none is named); [] when none runs."""
    from .cells import dna_of, implemented

    ips, _ = local_cluster_nodes()
    ports = [dna_of(cell).recp_port for cell in implemented()]
    return [ip for ip in dict.fromkeys(ips + machine_ips()) if any(answers(ip, port) for port in ports)]


# ---------------------------------------------------------------- failures in words


def _file_problem(exc: OSError) -> str:
    what = (exc.strerror or "cannot be used").lower()
    return f"{exc.filename}: {what}" if exc.filename else what


def explain(exc: Exception, cell: str) -> CLIError:
    """Any failure of a network command as a message for people and its exit code."""
    from .dstream.frames import StreamError
    from .identity import MnemonicError
    from .keystore import KeystoreError
    from .net.peer import PeerRejected, PeerUnreachable

    if isinstance(exc, CLIError):
        return exc
    if isinstance(exc, PeerUnreachable):
        return CLIError(f"{exc}: is a {cell} running there? Else {NAME_ONE}", EXIT_UNREACHABLE)
    if isinstance(exc, PeerRejected):
        return CLIError(f"the node refused: {exc.detail or exc.reason} ({exc.reason})")
    if isinstance(exc, StreamError | KeystoreError | MnemonicError | ValueError):
        return CLIError(str(exc))  # their messages are written for people (a malformed reply, a bad word)
    if isinstance(exc, OSError):
        return CLIError(_file_problem(exc))
    return CLIError(f"failed unexpectedly ({exc or 'no detail'}); this is a bug: please report it")


def run(prog: str, cell: str, body: Callable[[], int]) -> int:
    """Run a command's body; print any failure as one line 'prog: message' and return its code."""
    try:
        return body()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        failure = explain(exc, cell)
        print(f"{prog}: {failure}", file=sys.stderr)
        return failure.code
