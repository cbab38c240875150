"""The `borgusb` command line.

`COMMANDS` (at the end) is the one table of subcommands: name → entry point
("module:function", imported only when that command runs) and its one-line
help. Each entry point builds its own parser, so `borgusb --help` imports no
command module and stays instant; the wallet and envelope commands live here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from . import __version__, ttyprompt
from .clitools import EXIT_CODES, EXIT_FAIL, EXIT_OK, EXIT_USAGE, CLIError, existing_keystore, port_number

# ---------------------------------------------------------------- passphrases


def read_passphrase(args: argparse.Namespace, *, confirm: bool = False, prompt: str = "Keystore passphrase: ") -> str:
    """The passphrase of `args.keystore` (file or terminal); for an existing keystore, checked intact first."""
    keystore_path = getattr(args, "keystore", None)
    if not confirm and keystore_path and Path(keystore_path).is_file():
        intact_wallet(Path(keystore_path))  # every command that unlocks: a damaged one is said before asking
    if getattr(args, "passphrase_file", None):
        try:
            text = Path(args.passphrase_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot read the passphrase file: {exc.strerror}") from None
        passphrase = text.splitlines()[0] if text else ""
    elif confirm:  # a new keystore's: the one rule, asked again in place after a slip
        from .keystore import check_new_passphrase

        try:
            return ttyprompt.new_passphrase(check_new_passphrase)
        except ttyprompt.GaveUp as exc:
            raise CLIError(str(exc)) from None
    else:  # from the controlling terminal, also when stdin is a pipe (`echo … | borgusb envelope sign`)
        try:
            passphrase = ttyprompt.secret(prompt)
        except ttyprompt.GaveUp as exc:
            raise CLIError(str(exc)) from None
    if not passphrase:
        raise CLIError("the passphrase must not be empty")
    return passphrase


def read_bip39_passphrase(args: argparse.Namespace) -> str:
    path = getattr(args, "bip39_passphrase_file", None)
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read the BIP39 passphrase file: {exc.strerror}") from None
    return text.splitlines()[0] if text else ""


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# ---------------------------------------------------------------- wallet


def read_new_passphrase(args: argparse.Namespace) -> str:
    """A new keystore's passphrase (file or typed twice), held to the one rule before anything is shown."""
    from .keystore import WeakPassphrase, check_new_passphrase

    passphrase = read_passphrase(args, confirm=True)
    try:
        check_new_passphrase(passphrase)
    except WeakPassphrase as exc:
        raise CLIError(f"the passphrase file's passphrase is too short: {exc}") from None
    return passphrase


def intact_wallet(path: Path) -> None:
    """Say that the keystore at `path` is damaged (and how to restore) before a passphrase is asked."""
    from .keystore import KeystoreCorrupt, read_wallet

    try:
        read_wallet(path)
    except KeystoreCorrupt as exc:
        raise CLIError(
            f"the keystore {path} is damaged ({exc}); no passphrase can open it. Restore the wallet from its "
            f"24 words: borgusb wallet restore --keystore {path} --force"
        ) from None


def _show_words(words: list[str]) -> None:
    print("\nYour 24 words. Write them down, in order, and keep them offline.")
    print("They are the only way to restore this wallet; BorgUSB shows them only now.\n")
    rows = (len(words) + 2) // 3
    for r in range(rows):
        cells = []
        for c in range(3):
            i = r + c * rows
            if i < len(words):
                cells.append(f"{i + 1:>2}. {words[i]:<10}")
        print("   ".join(cells))
    print()


def _confirm_words(words: list[str]) -> None:
    """Ask for three random words back, off the screen, only on a terminal; a slip asks that word again."""
    if not sys.stdin.isatty():
        return
    input("Press Enter when you have written them down (the screen is then cleared). ")
    ttyprompt.clear_screen()
    positions = sorted(secrets.SystemRandom().sample(range(len(words)), 3))
    try:
        ttyprompt.check_words(words, positions, lambda: _show_words(words))
    except ttyprompt.GaveUp as exc:
        raise CLIError(str(exc)) from None


def _require_new_path(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise CLIError(f"{path} already exists: refusing to overwrite a keystore (use --force)")
    if not path.parent.is_dir():
        raise CLIError(f"the directory {path.parent} does not exist")


def cmd_wallet_new(args: argparse.Namespace) -> int:
    from .identity import Wallet
    from .keystore import save_wallet

    path = Path(args.keystore)
    _require_new_path(path, args.force)
    bip39_passphrase = read_bip39_passphrase(args)
    passphrase = read_new_passphrase(args)  # before the words: a refused passphrase never wastes a set
    with Wallet.create(bip39_passphrase) as wallet:
        words = wallet.mnemonic().split()
        _show_words(words)
        _confirm_words(words)
        save_wallet(path, wallet, passphrase)
        _report_identity(wallet.public.to_dict(), args, f"Wallet written to {path}")
    return EXIT_OK


def _read_words(args: argparse.Namespace) -> str:
    """The words from stdin; at a terminal, a word not in the list is asked again alone."""
    from .identity import UnknownWord, normalize_words, validate_mnemonic

    if not sys.stdin.isatty():
        return sys.stdin.read()
    print("Type your words separated by spaces, then Enter:", file=sys.stderr)

    def bad_word(exc: Exception) -> int | None:
        return exc.position - 1 if isinstance(exc, UnknownWord) else None

    try:
        return ttyprompt.fix_words(normalize_words(input()), validate_mnemonic, bad_word)
    except ttyprompt.GaveUp as exc:
        raise CLIError(str(exc)) from None


def cmd_wallet_restore(args: argparse.Namespace) -> int:
    from .identity import Wallet
    from .keystore import save_wallet

    path = Path(args.keystore)
    _require_new_path(path, args.force)
    passphrase = read_new_passphrase(args) if args.passphrase_file else ""  # a file's: checked first
    with Wallet.from_mnemonic(_read_words(args), read_bip39_passphrase(args)) as wallet:
        save_wallet(path, wallet, passphrase or read_new_passphrase(args))
        _report_identity(wallet.public.to_dict(), args, f"Wallet restored to {path}")
    return EXIT_OK


def _report_identity(info: dict[str, str], args: argparse.Namespace, headline: str = "") -> None:
    if getattr(args, "json", False):
        _print_json(info)
        return
    if headline:
        print(headline)
    print(f"  Doge address : {info['doge_address']}")
    print(f"  Public key   : {info['public_key']}")
    print(f"  Fingerprint  : {info['fingerprint']}")
    for key in ("mnemonic", "wif"):
        if key in info:
            print(f"  {key.upper():<13}: {info[key]}")


def cmd_wallet_show(args: argparse.Namespace) -> int:
    from .keystore import load_wallet

    wallet = load_wallet(existing_keystore(args.keystore), read_passphrase(args))
    with wallet:
        info: dict[str, str] = wallet.public.to_dict()
        if args.reveal:
            info["mnemonic"] = wallet.mnemonic()
            info["wif"] = wallet.wif()
        _report_identity(info, args)
    return EXIT_OK


def cmd_wallet_derive(args: argparse.Namespace) -> int:
    from .identity import derive_public

    info = derive_public(sys.stdin.read(), read_bip39_passphrase(args)).to_dict()
    _report_identity(info, args)
    return EXIT_OK


# ---------------------------------------------------------------- envelope


def cmd_envelope_sign(args: argparse.Namespace) -> int:
    from . import canonical, envelope
    from .clock import SystemClock
    from .keystore import load_wallet

    try:
        payload = canonical.loads(sys.stdin.buffer.read())
    except canonical.CanonicalError as exc:
        raise CLIError(f"the payload on stdin is not allowed JSON: {exc}") from None
    with load_wallet(existing_keystore(args.keystore), read_passphrase(args)) as wallet:
        try:
            env = envelope.sign(wallet.key, args.type, payload, SystemClock(), ip=args.ip, port=args.port, to=args.to)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    sys.stdout.write(envelope.encode(env).decode("utf-8") + "\n")
    return EXIT_OK


def cmd_envelope_verify(args: argparse.Namespace) -> int:
    from . import envelope
    from .clock import SystemClock

    verifier = envelope.Verifier(SystemClock(), window_ms=args.window_ms)
    data = sys.stdin.buffer.read().strip()
    try:
        env = verifier.verify(data, expected_signer=args.expect_signer)
    except envelope.EnvelopeError as exc:
        print(f"rejected ({exc.reason}): {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        _print_json({"type": env.type, "signer": env.signer, "to": env.to, "ts": env.ts, "payload": env.payload})
    else:
        _print_json(env.payload)
    return EXIT_OK


# ---------------------------------------------------------------- parsers


def _add_passphrase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="read the keystore passphrase from the first line of FILE (for scripts)",
    )


def wallet_parser() -> argparse.ArgumentParser:
    wallet = argparse.ArgumentParser(prog="borgusb wallet", description=COMMANDS["wallet"].help)
    wsub = wallet.add_subparsers(dest="wallet_command", metavar="COMMAND", required=True)

    def keystore_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--keystore", required=True, metavar="PATH", help="the keystore file")

    new = wsub.add_parser("new", help="create a wallet: 24 new words, encrypted to the keystore")
    keystore_arg(new)
    _add_passphrase_args(new)
    new.add_argument("--bip39-passphrase-file", metavar="FILE", help="optional BIP39 passphrase (the '25th word')")
    new.add_argument("--force", action="store_true", help="overwrite an existing keystore")
    new.add_argument("--json", action="store_true", help="print the public identity as JSON")
    new.set_defaults(func=cmd_wallet_new)

    restore = wsub.add_parser("restore", help="restore a wallet from its words (read from the terminal or stdin)")
    keystore_arg(restore)
    _add_passphrase_args(restore)
    restore.add_argument("--bip39-passphrase-file", metavar="FILE", help="the BIP39 passphrase, if the wallet had one")
    restore.add_argument("--force", action="store_true", help="overwrite an existing keystore")
    restore.add_argument("--json", action="store_true", help="print the public identity as JSON")
    restore.set_defaults(func=cmd_wallet_restore)

    show = wsub.add_parser("show", help="public key, Doge address and fingerprint of a keystore")
    keystore_arg(show)
    _add_passphrase_args(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--reveal", action="store_true", help="also print the 24 words and the WIF private key")
    show.set_defaults(func=cmd_wallet_show)

    derive = wsub.add_parser("derive", help="read words on stdin, print public key and Doge address; writes nothing")
    derive.add_argument("--bip39-passphrase-file", metavar="FILE", help="the BIP39 passphrase, if any")
    derive.add_argument("--json", action="store_true", help="machine-readable output")
    derive.set_defaults(func=cmd_wallet_derive)
    return wallet


def envelope_parser() -> argparse.ArgumentParser:
    env = argparse.ArgumentParser(prog="borgusb envelope", description=COMMANDS["envelope"].help)
    esub = env.add_subparsers(dest="envelope_command", metavar="COMMAND", required=True)

    sign = esub.add_parser("sign", help="payload JSON on stdin → signed envelope on stdout")
    sign.add_argument("--keystore", required=True, metavar="PATH", help="the signing wallet's keystore")
    _add_passphrase_args(sign)
    sign.add_argument("--type", default="app.message", help="message type (default: app.message)")
    sign.add_argument("--ip", default="", help="sender IP to put in the envelope")
    sign.add_argument("--port", type=port_number(0), default=0, help="sender port to put in the envelope")
    sign.add_argument(
        "--to",
        default="",
        metavar="PUBKEY:PORT",
        help="the recipient: a node key and the port of its cell (a cell refuses a message addressed elsewhere)",
    )
    sign.set_defaults(func=cmd_envelope_sign)

    verify = esub.add_parser(
        "verify", help="envelope on stdin; exit 0 and print the payload if valid, else exit 1 and the reason"
    )
    verify.add_argument("--expect-signer", metavar="PUBKEY", help="reject unless signed by this public key")
    verify.add_argument("--window-ms", type=int, default=30_000, help="freshness window (default ±30000 ms)")
    verify.add_argument("--json", action="store_true", help="print type, signer, time and payload")
    verify.set_defaults(func=cmd_envelope_verify)
    return env


def _run_local(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse and run a command defined in this file, with one-line errors instead of tracebacks.

    The wallet modules are imported here, not at the top: other commands (node processes) need none."""
    from .identity import MnemonicError
    from .keystore import KeystoreError

    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, KeystoreError, MnemonicError) as exc:
        print(f"borgusb: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CLIError) else EXIT_FAIL
    except EOFError:
        print("borgusb: no input", file=sys.stderr)
        return EXIT_FAIL


def wallet(argv: list[str]) -> int:
    return _run_local(wallet_parser(), argv)


def envelope(argv: list[str]) -> int:
    return _run_local(envelope_parser(), argv)


# ---------------------------------------------------------------- the commands


class Command(NamedTuple):
    """A subcommand: its entry point as "module:function" (imported only when it runs) and its help."""

    entry: str
    help: str

    def load(self) -> Callable[[list[str]], int | None]:
        module, _, function = self.entry.partition(":")
        return getattr(importlib.import_module(module), function)


# Every `borgusb` subcommand, in the order `borgusb --help` lists them. Each entry
# point takes the arguments after the command's name and builds its own parser
# (prog "borgusb NAME"), so `borgusb NAME --help` is that module's own help.
COMMANDS: dict[str, Command] = {
    "wallet": Command("borgusb.cli:wallet", "create, restore and inspect the wallet (24 words) on the stick"),
    "envelope": Command("borgusb.cli:envelope", "sign a payload as a message envelope, or verify one"),
    "put": Command("borgusb.storecli:put", "store a file as owner-signed shards; prints its id (SHA-256)"),
    "get": Command("borgusb.storecli:get", "fetch an object by id with DStream into -o FILE (resumes)"),
    "stat": Command("borgusb.storecli:stat", "an object's size, owner, holders and copies (a health check)"),
    "rm": Command("borgusb.storecli:rm", "delete an object you own (a signed tombstone)"),
    "files": Command("borgusb.filescli:main", "your folders, private by default: ls, put, get, mv, versions, share"),
    "publish": Command("borgusb.publishcli:main", "media anyone can watch by a link, or private in your files"),
    "pay": Command("borgusb.paycli:main", "Borg Shells: balance, send, history (the peerPaysCell ledger)"),
    "mail": Command("borgusb.mailcli:main", "encrypted mail between identity keys: send, ls, read, rm, publish"),
    "memory": Command("borgusb.memorycli:main", "memories signed by your key, searched in natural language"),
    "cell": Command("borgusb.node:main", "run one cell as a process; list the cell DNA table"),
    "cellhost": Command("borgusb.cellhost.__main__:main", "load the cells' code once and fork every cell from it"),
    "cluster": Command("borgusb.clustercli:main", "a local cluster of real node processes on 127.0.0.2, .3, ..."),
    "sim": Command("borgusb.tree.sim:main", "simulate a PeerTree of up to a million nodes in memory"),
    "conduit": Command("borgusb.conduit.__main__:main", "BorgHUIConduit, the browser interface, on localhost"),
    "hosted": Command("borgusb.hosted.__main__:main", "hosted mode: use the stick plugged into this PC, on localhost"),
    "flash": Command("borgusb.flash.cli:main", "write the image onto a USB stick or SD card, safely; read it back"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: `--help`, `--version` and the list of commands (no command's own options)."""
    parser = argparse.ArgumentParser(
        prog="borgusb",
        description=(
            "BorgUSB: your identity on a USB stick, the network as your computer. "
            "Every message is a signed, timestamped envelope; no logins, no servers."
        ),
        epilog=f"Run 'borgusb COMMAND --help' for the options of a command. {EXIT_CODES}",
    )
    parser.add_argument("--version", action="version", version=f"borgusb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # --help, --version, or a usage error (exit 2)
        return EXIT_USAGE  # pragma: no cover - parse_args exits for every argv without a command
    try:
        return int(COMMANDS[argv[0]].load()(argv[1:]) or 0)
    except KeyboardInterrupt:
        print("borgusb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        return 0


if __name__ == "__main__":
    sys.exit(main())
