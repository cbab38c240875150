"""The cell host: every cell its own process, the code loaded once.

Thirteen cell processes that each import Python, aiohttp, cryptography and
BorgUSB would each hold ~29 MiB of private heap. The cell host imports all of
it once, collects and freezes its heap (`gc.freeze`, so the collector never
writes to those pages again) and forks one child per cell: the children share
the host's pages copy-on-write and pay only for what they change.

Each child is still a cell of its own: its own process and, where the host
may place it, its own cgroup (memory and CPU limits, killed alone), and a
crash of one takes nothing else down. Two ways to use it:

* **systemd** (the USB image, the Pi): ``borgusb-cellhost.service`` runs
  `host.serve` on a Unix socket; each ``borgusb-cell@NAME.service`` runs the
  tiny stub `spawn.py` (standard library only), which asks the host for a
  child, hands it its own stdin/stdout/stderr, and tells systemd the child is
  the unit's main process (``MAINPID``). The host places the child in the
  unit's cgroup and mount namespace with the unit's user, so
  ``systemctl status/stop/restart borgusb-cell@NAME``, ``MemoryMax=`` and the
  unit's sandbox all apply to the cell itself.
* **supervised** (hosted mode, tests): ``borgusb cellhost run`` forks every
  cell itself, restarts one that fails (with back-off) and stops them all on
  SIGTERM.
"""
