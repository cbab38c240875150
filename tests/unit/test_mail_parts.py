"""Mail's attachments (sealed, bound to their message, safe names) and a holder's inbox files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from borgusb.cells.mail.store import InboxStore
from borgusb.keys import SigningKey
from borgusb.mail import errors
from borgusb.mail.attach import open_attachment, safe_name, seal_attachment
from borgusb.mail.inbox import Limits
from borgusb.mail.message import Content, compose

T = 1_764_000_000_000
A, B, C = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()


def test_attachment_opens_for_its_recipient_and_message_only() -> None:
    box = seal_attachment(B.public_key, A.public_key_hex, T, "", "../../etc/passwd", b"data")
    assert b"passwd" not in box and b"data" not in box
    assert open_attachment(B, A.public_key_hex, T, "", box) == ("passwd", b"data")
    for key, sender, ts in ((C, A.public_key_hex, T), (B, C.public_key_hex, T), (B, A.public_key_hex, T + 1)):
        with pytest.raises(errors.Undecryptable):
            open_attachment(key, sender, ts, "", box)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("a/b/c.txt", "c.txt"),
        ("..\\x.doc", "x.doc"),
        (".hidden", "hidden"),
        ("", "attachment"),
        ("\x00\n", "attachment"),
    ],
)
def test_safe_names(name: str, safe: str) -> None:
    assert safe_name(name) == safe


def test_inbox_files_survive_a_restart_and_a_damaged_one_is_set_aside(tmp_path: Path) -> None:
    store = InboxStore(tmp_path, Limits(), max_inboxes=2)
    inbox = store.get_or_make(B.public_key_hex)
    assert inbox is not None
    m = compose(A, B.public_key_hex, Content("s", "b"), T)
    inbox.deposit(T, m)
    store.save(inbox)
    assert store.get_or_make(C.public_key_hex) is not None
    assert store.get_or_make(A.public_key_hex) is None  # bounded: two inboxes at most
    (tmp_path / f"{C.public_key_hex}.json").write_text("{not json")
    again = InboxStore(tmp_path, Limits(), max_inboxes=2)
    kept = again.get(B.public_key_hex)
    assert kept is not None and list(kept.messages) == [m.id]
    assert again.get(C.public_key_hex) is None and (tmp_path / f"{C.public_key_hex}.bad").exists()
    doc = json.loads((tmp_path / f"{B.public_key_hex}.json").read_text())
    doc["messages"][0]["ts"] += 1  # an edited file does not verify: set aside, not trusted
    (tmp_path / f"{B.public_key_hex}.json").write_text(json.dumps(doc))
    assert InboxStore(tmp_path, Limits(), max_inboxes=2).get(B.public_key_hex) is None


async def test_where_a_cell_keeps_its_inboxes(tmp_path: Path) -> None:
    """With the machine's key and no --data: kept under data_root across restarts; with a key made
    for the process: a temporary directory, gone at a clean stop; with --data: there."""
    from borgusb.cells import spec
    from borgusb.cells.mail.cell import MailCell
    from borgusb.cells.mail.settings import MailSettings

    row = spec("mailTreeCell").dna_row()
    settings = MailSettings.from_sources({}, {"BORGUSB_DATA_ROOT": str(tmp_path / "root")})
    kept = MailCell(row, "127.0.0.1", key=SigningKey.generate(), settings=settings)
    assert kept.data_dir == tmp_path / "root" / "borgusb-mailTreeCell"
    temp = MailCell(row, "127.0.0.1", settings=settings)
    assert temp.data_dir is not None and temp.data_dir.parent == tmp_path / "root" and temp.data_dir.exists()
    given = MailCell(row, "127.0.0.1", settings=settings, data_dir=tmp_path / "given")
    assert (tmp_path / "given" / "mail").is_dir()
    for cell in (kept, temp, given):
        await cell.on_stop()
        await cell.peers.close()
    assert not temp.data_dir.exists() and kept.mailboxes.root.is_dir() and given.mailboxes.root.is_dir()


def test_only_recent_inboxes_stay_in_memory_and_bytes_are_bounded(tmp_path: Path) -> None:
    store = InboxStore(tmp_path, Limits(max_bytes=2000), max_inboxes=10, cached=2)
    keys = [SigningKey.generate() for _ in range(3)]
    for k in keys:
        inbox = store.get_or_make(k.public_key_hex)
        assert inbox is not None
        inbox.deposit(T, compose(A, k.public_key_hex, Content("s", "b"), T))
        store.save(inbox)
    assert list(store.inboxes) == [k.public_key_hex for k in keys[1:]] and len(store.keys) == 3
    first = store.get(keys[0].public_key_hex)  # read back from its file
    assert first is not None and len(first.messages) == 1 and len(store.inboxes) == 2
    with pytest.raises(errors.InboxFull):
        first.deposit(T, compose(C, keys[0].public_key_hex, Content("s", "x" * 2000), T))
