"""Boot-time steps of the USB image, one per systemd unit: ``python3 -m borgusb.image.boot STEP``.

* ``stick`` (borgusb-stick.service, borgusb.image.stickcopy): copy the marker, the keystore and the always-on
  flag from the partition labelled BORGUSB into RAM; write the cells' arguments and the static network.
* ``ready`` (borgusb-ready.service, borgusb.image.ready): once every cell answers, print ``BORGUSB-READY``,
  ``BORGUSB-MEM``, ``BORGUSB-HYGIENE`` and what the marker's ``selftest`` asks for.
* ``nodekey`` (borgusb-nodekey.service, Pi profile: ``borgusb.nodekey=card``; borgusb.image.nodekey): load
  the node key from the BORGUSB partition, or make it on first boot (encrypted, passphrase bound to the board).
* ``writeback`` (borgusb-keystore-writeback.service, its .path unit sees the conduit save a wallet into RAM;
  borgusb.image.writeback): write the keystore to the stick (read-write for that write only, atomic), read it back.
* ``poweroff`` (borgusb-poweroff.service, the conduit's power-off button; borgusb.image.removed): as a pulled stick.
* ``kiosk-page`` (borgusb-kiosk.service, desktop image; borgusb.image.kiosk): the kiosk's first page, which
  forwards to the conduit's link with the secret both share.
* ``removed`` (borgusb-stick-removed.service, started by a udev rule when the BORGUSB device goes away;
  borgusb.image.removed): unless always-on, kill the cells, wipe the copies of the keystore, power off at once.

Each step imports only its own module (the standard library, and borgusb.keystore where a keystore is read),
so it starts fast even on a slow machine.
"""

from __future__ import annotations

import os
import sys

STEPS = ("stick", "ready", "removed", "nodekey", "writeback", "poweroff", "kiosk-page")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STEPS:
        print(f"usage: python3 -m borgusb.image.boot {'|'.join(STEPS)}", file=sys.stderr)
        return 2
    # how long the stick's partition may take to appear: the machine booted from it, so it is there, but a
    # slow stick, a busy USB bus or a loaded machine (a 2-core host running TCG guests) can take tens of seconds
    wait = float(os.environ.get("BORGUSB_STICK_WAIT", "60"))
    if argv[0] == "stick":
        from .stickcopy import cmd_stick

        return cmd_stick(wait)
    if argv[0] == "nodekey":
        from .nodekey import boot_step

        return boot_step(wait)
    if argv[0] == "ready":
        from .ready import cmd_ready

        return cmd_ready(float(os.environ.get("BORGUSB_READY_TIMEOUT", "600")))
    if argv[0] == "writeback":
        from .writeback import cmd_writeback

        return cmd_writeback(wait)
    if argv[0] == "kiosk-page":
        from .kiosk import cmd_kiosk_page

        return cmd_kiosk_page()
    if argv[0] == "poweroff":
        from .removed import cmd_poweroff

        return cmd_poweroff()
    from .removed import cmd_removed

    return cmd_removed()


if __name__ == "__main__":
    sys.exit(main())
