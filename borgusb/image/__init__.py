"""Code that runs inside the booted USB image (see mkosi.conf, overlay/, image/).

``python3 -m borgusb.image.boot stick|ready|removed|nodekey`` is called by the units in
overlay/usr/lib/systemd/system/ (borgusb.image.boot dispatches to one module per step): find the
BORGUSB data partition by label and copy its keystore into RAM (``stickcopy``), report when every
cell answers (``ready``, ``memory``), make or load the node key (``nodekey``), and wipe and power off
when the stick leaves (``removed``); ``runtime`` holds what the steps share. The stick's format
(label, marker, file names) is borgusb.stick.
"""
