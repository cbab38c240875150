"""Hosted mode: plug the stick into a running Linux PC, open localhost, pull it out and nothing is left.

``borgusb hosted`` (``__main__``) watches udev (pyudev) for block devices that
carry the BorgUSB data partition: filesystem label ``BORGUSB`` *and* the
``.borgusb`` marker file (a device name means nothing). For each stick it
mounts the partition read-only in a private mount namespace, reads the marker
and the keystore into RAM, unmounts, and starts the node (one set of cells for
the machine, shared by every stick present) and one conduit per stick on
localhost, all with their state in a private tmpfs. When the kernel says the
stick is gone (or on Ctrl-C / SIGTERM) it stops every process it started,
wipes the RAM copies and removes the RAM directory.

Modules: ``mounts`` (namespace, mount/umount through libc: no mount helper, so
no /run/mount/utab), ``watcher`` (sessions: one per stick, and the node),
``udev`` (block-device events), ``stickread`` (a stick's marker and keystore,
or why it is refused; the format is borgusb.stick), ``stickfs`` (reading and
writing the partition: private mount or mtools), ``procs`` (the processes
started, their environment in RAM, stopping them), ``conduit`` (the per-stick
conduit process: keystore in RAM, writes to the stick only when the wallet is
created or changed, atomically), ``bundle`` (the self-sufficient copy on the
stick's data partition).
"""
