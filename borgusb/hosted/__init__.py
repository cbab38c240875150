"""Hosted mode: plug the stick into a running Linux PC, open localhost, pull it out and nothing is left.

``borgusb hosted`` (``__main__``) watches udev (pyudev) for block devices that
carry the BorgUSB data partition: filesystem label ``BORGUSB``, a FAT
filesystem, *and* the ``.borgusb`` marker file (a device name means nothing).
For each stick it reads the marker and the keystore into RAM (mtools on the
block device, no mount; without mtools a read-only vfat mount in a private
mount namespace, unmounted at once), and starts the node (one set of cells for
the machine, shared by every stick present) and one conduit per stick on
localhost, all with their state in a private tmpfs and each as a user of its
own with no capabilities: only the watcher stays root. When the kernel says the
stick is gone (or on Ctrl-C / SIGTERM) it stops every process it started,
wipes the RAM copies and removes the RAM directory.

Modules: ``mounts`` (namespace, mount/umount through libc: no mount helper, so
no /run/mount/utab), ``watcher`` (sessions: one per stick, and the node),
``udev`` (block-device events), ``stickread`` (a stick's marker and keystore,
or why it is refused; the format is borgusb.stick), ``stickfs`` (reading and
writing the partition: mtools or a private vfat mount), ``users`` (the
unprivileged users the node and the conduits run as), ``procs`` (the processes
started, their environment in RAM, stopping them), ``conduit`` (the per-stick
conduit process: keystore in RAM), ``stickwrite`` (the conduit's one write to
the stick, made by the watcher), ``bundle`` (the self-sufficient copy on the
stick's data partition) and ``bootstrap`` (what runs first from it: a checked
copy in RAM).
"""
