"""`borgusb mail send|ls|read|rm|publish`: encrypted mail between identity keys (mailTreeCell).

    borgusb mail send --to PUBKEY|ADDRESS --subject S (--body TEXT | --body-file F) [--reply-to ID] [--attach FILE ...]
    borgusb mail ls [--json]          your inbox, oldest first: id, time, sender, subject, flags
                                      (publishes your directory entry first if the directory has none)
    borgusb mail read ID [--save DIR] open one message (an id or its first digits), mark it read,
                                      and with --save fetch and open its attachments into DIR
    borgusb mail rm ID [ID ...]       delete messages from your inbox on every holder
    borgusb mail publish [--name N]   publish your directory entry: your address (D…) is your key,
                                      with a display name if you give one (a label, not an identifier)

``--to`` takes a public key, or a Dogecoin address resolved through the directory entry its owner
signed (the command checks it and says which key it resolved to; docs/mail.md, "The directory entry").

Your wallet signs and opens: ``--keystore PATH [--passphrase-file F]`` (or ``--key-file`` for
scripts). The subject and body are sealed to the recipient's key here, before anything leaves
this machine; cells see ciphertext only, and only your key opens your mail (docs/mail.md).
The command talks to the mailTreeCell named by ``--node IP`` (default $BORGUSB_NODE, else a local
cluster's, else this machine's own), which reaches the recipient's inbox holders. Attachments
are sealed the same way and stored as shards through the shardTreeCell at ``--shard-node``
(default: the same node).

Flags in ``ls``: ``*`` unread, ``new`` a sender you have never read mail from, ``!`` does not open
(tampered, or not sealed to you). Exit codes as every command's (`clitools.EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import dna
from .clitools import (
    EXIT_CODES,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    add_wallet_options,
    find_node,
    port_number,
    require_wallet,
)
from .clitools import run as run_command
from .clock import SystemClock
from .envelope import Verifier
from .keys import SigningKey
from .net.peer import PeerClient, PeerError, PeerRejected

DNA = dna.get("mailTreeCell")

EXPLAIN = {
    "rate_limited": "the recipient's holders take no more mail from you right now; try again in a minute",
    "inbox_full": "the recipient's inbox is full",
    "too_large": "the message is too large (send files as attachments)",
    "stale": "signed too long ago, or this computer's clock is behind the network's",
    "future_dated": "this computer's clock is ahead of the network's",
    "no_holder": "no holder of that inbox answered",
    "not_holder": "the mail nodes are changing; try again",
    "deleted": "the recipient already deleted this message",
    "rollback": "the directory holds a newer entry for this address",
    "bad_address": "that is not a Dogecoin address (D…)",
}


def refusal(exc: PeerRejected) -> CLIError:
    what = EXPLAIN.get(exc.reason, exc.reason)
    return CLIError(f"{what} ({exc.reason}){': ' + exc.detail if exc.detail else ''}")


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts / 1000))


async def inbox(client: Any, key: SigningKey, now_ms: int) -> list[dict[str, Any]]:
    """The merged inbox, each entry opened with `key` (the subject and body, or why not)."""
    from .mail.inbox import merge, opened
    from .mail.request import sign_request

    reply = await client.ask(sign_request(key, "list", [], now_ms))
    replies = reply.get("replies") if isinstance(reply.get("replies"), list) else []
    entries, dropped = merge(key.public_key_hex, replies)
    if dropped:
        print(f"borgusb mail: {dropped} item(s) from the holders did not verify and were dropped", file=sys.stderr)
    return opened(key, entries)


async def resolve_to(client: Any, to: str) -> tuple[str, str]:
    """(recipient key, what to tell the person) for a public key, or an address resolved through the directory."""
    from .keys import fingerprint
    from .ledger.accounts import is_account
    from .mail.directory import check_address
    from .mail.errors import MailError

    if is_account(to.lower()):
        return to.lower(), ""
    try:
        addr = check_address(to)
    except MailError:
        raise CLIError("--to is a public key (66 hex digits) or a Dogecoin address (D…)", EXIT_USAGE) from None
    entry, dropped = await client.resolve(addr)
    if dropped:
        print(f"borgusb mail: {dropped} directory answer(s) did not verify and were dropped", file=sys.stderr)
    if entry is None:
        raise CLIError(f"no directory entry for {addr}: its owner publishes one with 'borgusb mail publish'")
    name = f", who calls themselves {entry.name!r}" if entry.name else ""
    said = f"{addr} is key {entry.key} (fingerprint {fingerprint(bytes.fromhex(entry.key))}{name})"
    return entry.key, said


async def publish(client: Any, key: SigningKey, now_ms: int, name: str = "") -> dict[str, Any]:
    """Sign and publish `key`'s directory entry; the cell's reply."""
    from .mail.directory import sign_entry

    return await client.publish(sign_entry(key, now_ms, name).to_dict())


async def publish_if_missing(client: Any, key: SigningKey, now_ms: int) -> None:
    """A person's first ``ls`` makes them reachable by address: publish an entry (no name) when the
    directory has none for their address. Best effort: the inbox is listed whatever happens here."""
    try:
        entry, _ = await client.resolve(key.doge_address)
        if entry is None:
            done = await publish(client, key, now_ms)
            print(
                f"borgusb mail: published your directory entry ({done.get('stored')} of {done.get('holders')} "
                f"holders): mail to {key.doge_address} now reaches you",
                file=sys.stderr,
            )
    except (PeerRejected, PeerError) as exc:
        print(f"borgusb mail: your directory entry was not checked or published ({exc})", file=sys.stderr)


def _pick(entries: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    p = prefix.strip().lower()
    found = [e for e in entries if e["id"].startswith(p)] if len(p) >= 4 else []
    if len(found) != 1:
        raise CLIError(
            f"{'no' if not found else 'more than one'} message in your inbox with id {prefix!r}"
            + (" (give at least 4 digits)" if len(p) < 4 else ""),
            EXIT_USAGE,
        )
    return found[0]


async def put_attachments(
    peers: PeerClient, ip: str, key: SigningKey, to: str, ts: int, re_id: str, files: list[str]
) -> list[str]:
    """Seal each file to `to` for this message and store it as shards: the object ids."""
    from .dstream import put_file
    from .mail.attach import seal_attachment

    oids = []
    for name in files:
        box = seal_attachment(bytes.fromhex(to), key.public_key_hex, ts, re_id, name, Path(name).read_bytes())
        with tempfile.TemporaryDirectory(prefix="borgusb-mail-") as tmp:
            path = Path(tmp) / "sealed"
            path.write_bytes(box)
            oids.append((await put_file(peers, ip, dna.get("shardTreeCell").recp_port, path, key))["id"])
    return oids


async def save_attachments(peers: PeerClient, ip: str, key: SigningKey, e: dict[str, Any], into: Path) -> list[Path]:
    """Fetch, check and open each attachment of an opened message into the directory `into`."""
    from .cells.shard.client import READ_WAIT_S, locate_through_heal
    from .dstream import Receiver, parse_locate
    from .mail.attach import open_attachment

    into.mkdir(parents=True, exist_ok=True)
    saved = []
    for oid in e["attachments"]:
        reply = await locate_through_heal(peers, ip, dna.get("shardTreeCell").recp_port, oid, wait_s=READ_WAIT_S)
        m, holders = parse_locate(reply, oid)
        part = into / f".{oid}.part"
        try:
            receiver = Receiver(peers, m, holders, part)
            await receiver.run()
            await receiver.receipts_handed()  # before the CLI ends: the holders' serve reward
            name, data = open_attachment(key, e["from"], e["ts"], e["re"], part.read_bytes())
        finally:
            part.unlink(missing_ok=True)
        path, n = into / name, 1
        while path.exists():
            path, n = into / f"{n}-{name}", n + 1
        path.write_bytes(data)
        saved.append(path)
    return saved


def _line(e: dict[str, Any]) -> str:
    flags = ("*" if not e["read"] else " ") + (" new" if e["new_sender"] else "    ") + (" !" if "error" in e else "  ")
    subject = f"(does not open: {e['error']})" if "error" in e else e["subject"]
    re_ = f" [re {e['re'][:8]}]" if e["re"] else ""
    return f"{e['id'][:12]} {flags} {_when(e['ts'])}  from {e['from'][:16]}…  {subject}{re_}"


async def _run(args: argparse.Namespace) -> int:
    from .cells.mail.client import MailClient
    from .mail.directory import check_name
    from .mail.errors import MailError, Malformed
    from .mail.message import MAX_ATTACHMENTS, Content, compose
    from .mail.request import sign_request
    from .storecli import load_key

    key = load_key(args)
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=args.timeout) as peers:
        client = MailClient(peers, args.node, port=args.port or DNA.recp_port)
        try:
            if args.cmd == "send":
                body = Path(args.body_file).read_text(encoding="utf-8") if args.body_file else args.body
                to, said = await resolve_to(client, args.to.strip())
                if said:
                    print(said, file=sys.stderr if args.json else sys.stdout)
                re_id = ""
                if args.reply_to:
                    re_id = _pick(await inbox(client, key, clock.now_ms()), args.reply_to)["id"]
                try:
                    if len(args.attach) > MAX_ATTACHMENTS:
                        raise Malformed(f"at most {MAX_ATTACHMENTS} attachments per message")
                    ts = clock.now_ms()
                    oids = await put_attachments(peers, args.shard_node or args.node, key, to, ts, re_id, args.attach)
                    msg = compose(key, to, Content(args.subject, body or "", tuple(oids)), ts, re_id)
                except MailError as exc:
                    raise CLIError(f"{exc} ({exc.reason})", EXIT_USAGE) from None
                done = await client.post(msg.to_dict())
                text = f"sent {msg.id}: kept by {done['stored']} of {done['holders']} holders of {to[:16]}…'s inbox"
                print(json.dumps(done) if args.json else text)
                return EXIT_OK
            if args.cmd == "publish":
                try:
                    check_name(args.name)
                except MailError as exc:
                    raise CLIError(f"--name: {exc}", EXIT_USAGE) from None
                done = await publish(client, key, clock.now_ms(), args.name)
                text = (
                    f"published {key.doge_address} -> {key.public_key_hex}"
                    + (f" ({args.name})" if args.name else "")
                    + f": kept by {done['stored']} of {done['holders']} holders"
                )
                print(json.dumps(done) if args.json else text)
                return EXIT_OK
            if args.cmd == "ls":
                await publish_if_missing(client, key, clock.now_ms())
            entries = await inbox(client, key, clock.now_ms())
            if args.cmd == "ls":
                if args.json:
                    print(json.dumps([{k: v for k, v in e.items() if k != "body"} for e in entries]))
                else:
                    print("\n".join(_line(e) for e in entries) if entries else "no mail")
                return EXIT_OK
            if args.cmd == "read":
                e = _pick(entries, args.id)
                if "error" in e:
                    raise CLIError(
                        f"message {e['id'][:12]} does not open ({e['error']}): tampered, or not sealed to you"
                    )
                if not e["read"]:
                    await client.ask(sign_request(key, "read", [e["id"]], clock.now_ms()))
                if args.json:
                    if args.save:
                        saved = await save_attachments(peers, args.shard_node or args.node, key, e, Path(args.save))
                        e = dict(e, saved=[str(p) for p in saved])
                    print(json.dumps(e))
                    return EXIT_OK
                who = "  (a sender you have never read mail from)" if e["new_sender"] else ""
                print(f"id:      {e['id']}\nfrom:    {e['from']}{who}\ndate:    {_when(e['ts'])}")
                if e["re"]:
                    print(f"re:      {e['re']}")
                print(f"subject: {e['subject']}\n\n{e['body']}")
                if e["attachments"]:
                    print(
                        f"\n{len(e['attachments'])} attachment(s)" + ("" if args.save else ": --save DIR fetches them")
                    )
                if args.save:
                    for path in await save_attachments(peers, args.shard_node or args.node, key, e, Path(args.save)):
                        print(f"saved {path}")
                return EXIT_OK
            # rm
            ids = [_pick(entries, i)["id"] for i in args.ids]
            await client.ask(sign_request(key, "rm", ids, clock.now_ms()))
            print(json.dumps({"deleted": ids}) if args.json else f"deleted {len(ids)} message(s)")
            return EXIT_OK
        except PeerRejected as exc:
            raise refusal(exc) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="borgusb mail",
        description="encrypted mail between identity keys: send, ls, read, rm, publish",
        epilog=EXIT_CODES,
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    send = sub.add_parser("send", help="seal a message to a key and leave it with that key's inbox holders")
    send.add_argument(
        "--to",
        required=True,
        metavar="PUBKEY|ADDRESS",
        help="the recipient's public key (66 hex digits), or their address (D…) resolved through the directory",
    )
    send.add_argument("--subject", required=True, help="the subject (sealed too)")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--body", help="the message text")
    what.add_argument("--body-file", help="the message text from FILE (UTF-8)")
    send.add_argument("--reply-to", metavar="ID", help="the message in your inbox this replies to (threads)")
    send.add_argument(
        "--attach", action="append", default=[], metavar="FILE", help="a file to seal and send along (repeatable)"
    )
    ls = sub.add_parser("ls", help="your inbox")
    read = sub.add_parser("read", help="open one message and mark it read")
    read.add_argument("id", help="the message's id, or its first digits (4 at least)")
    read.add_argument("--save", metavar="DIR", help="fetch and open the message's attachments into DIR")
    rm = sub.add_parser("rm", help="delete messages from your inbox")
    rm.add_argument("ids", nargs="+", metavar="ID", help="message ids, or their first digits")
    pub = sub.add_parser("publish", help="publish your directory entry: your address resolves to your key")
    pub.add_argument(
        "--name", default="", help="a display name shown beside your key (a label: lookups are by address)"
    )
    for q in (send, ls, read, rm, pub):
        add_wallet_options(
            q, DNA.name, "your wallet keystore (signs and opens your mail)", "seconds to wait for the node"
        )
        q.add_argument("--port", type=port_number(), help=argparse.SUPPRESS)
        q.add_argument("--shard-node", metavar="IP", help="the shardTreeCell for attachments (default: --node)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        require_wallet(args, "mail is signed and opened by your wallet")
        if args.node is None:
            args.node = find_node(DNA.name, args.port or DNA.recp_port)
        return asyncio.run(_run(args))

    return run_command(f"borgusb mail {args.cmd}", DNA.name, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
