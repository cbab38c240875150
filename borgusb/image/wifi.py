"""Wi-Fi from the marker (the Pi image: a Zero 2 W has no Ethernet port), set up by the stick step.

:func:`wpa_config` and :func:`network_unit` are pure: the marker's ``wifi`` becomes a wpa_supplicant
configuration and a systemd-networkd unit (DHCP on the wireless interface). :func:`write_wifi` puts them
in RAM (/run), where ``borgusb-wifi@.service`` (image/pi/tree: started by udev for each wireless
interface, after the stick step) runs wpa_supplicant with the board's own Wi-Fi chip and firmware.

Nothing from the marker is pasted into the configuration as text: the SSID is written as hexadecimal
bytes and the passphrase as the WPA key derived from it (PBKDF2-HMAC-SHA1, 4096 rounds, salted with the
SSID, as IEEE 802.11i defines it; a 64-digit key is taken as it is). So no quote or newline in a
marker can add a line to the file, and the passphrase itself is not kept in RAM.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..stick import Wifi
from .runtime import RUN

WPA_CONF = RUN / "wifi" / "wpa_supplicant.conf"  # borgusb-wifi@.service runs only when this exists
WIFI_UNIT = Path("/run/systemd/network/10-borgusb-wifi.network")


def psk(wifi: Wifi) -> str:
    """The 256-bit WPA key, in hexadecimal."""
    if len(wifi.psk) == 64:
        return wifi.psk.lower()
    return hashlib.pbkdf2_hmac("sha1", wifi.psk.encode("ascii"), wifi.ssid.encode("utf-8"), 4096, 32).hex()


def wpa_config(wifi: Wifi) -> str:
    return (
        '# From the card\'s marker (.borgusb "wifi"), written by borgusb-stick.service\n'
        "update_config=0\n"
        "network={\n"
        f"\tssid={wifi.ssid.encode('utf-8').hex()}\n"
        "\tscan_ssid=1\n"  # a hidden network is found too
        "\tkey_mgmt=WPA-PSK\n"
        f"\tpsk={psk(wifi)}\n"
        "}\n"
    )


def network_unit() -> str:
    return (
        "# The Wi-Fi network of the card's marker (borgusb-wifi@.service joins it): DHCP\n"
        "[Match]\nType=wlan\n\n[Network]\nDHCP=yes\nLinkLocalAddressing=ipv6\n"
    )


def write_wifi(wifi: Wifi | None, conf: Path = WPA_CONF, unit: Path = WIFI_UNIT) -> None:
    """Both files, readable by root alone (the key is as good as the passphrase); nothing without a wifi."""
    if wifi is None:
        return
    conf.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(wpa_config(wifi))
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(network_unit())
