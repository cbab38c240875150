"""Code that runs inside the booted USB image (see mkosi.conf, overlay/, image/).

``python3 -m borgusb.image.boot stick|ready|removed`` is called by the units in
overlay/usr/lib/systemd/system/: find the BORGUSB data partition by label and
copy its keystore into RAM, report when every cell answers, and wipe and power
off when the stick leaves.
"""

LABEL = "BORGUSB"
MARKER = ".borgusb"
KEYSTORE = "keystore.json"
ALWAYS_ON_FILE = "always-on"
ALWAYS_ON_CMDLINE = "borgusb.alwayson=1"
