"""``borgusb flash``: write the USB or Pi image onto a stick or an SD card without wiping the wrong disk.

The pieces: ``decide`` (no I/O: which disks are candidates and why every other one is refused, the
size the person types to confirm, the order of the write), ``disks`` (the disks udev knows, the ones the
running system lives on and the mounted ones), ``image`` (the image's data partition and the keystore and
marker put on it), ``writer`` (the write, head last, and the read-back), ``check`` (whether a device holds
a complete stick) and ``cli`` (the command). docs/flash.md tells the whole story.
"""
