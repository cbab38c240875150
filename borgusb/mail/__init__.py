"""Encrypted mail without I/O: the signed sealed message, the recipient's signed requests, the inbox.

The mailTreeCell (borgusb/cells/mail/) carries these; opening a message happens only where the
person's key is unlocked (the CLI, the conduit). docs/mail.md has the wire formats and the threat model.
"""
