"""mailTreeCell: encrypted mail's inboxes on the network (the protocol core is `borgusb.mail`)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="mailTreeCell",
    runtime="borgusb.cells.mail.cell:MailCell",
    settings="borgusb.cells.mail.settings:MailSettings",
    client="borgusb.cells.mail.client:MailClient",
    web="borgusb.cells.mail.web:setup",
)
