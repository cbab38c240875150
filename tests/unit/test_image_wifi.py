"""The Pi's Wi-Fi configuration from the marker (borgusb/image/wifi.py), on the host."""

from __future__ import annotations

import stat
from pathlib import Path

from borgusb.image.wifi import network_unit, psk, wpa_config, write_wifi
from borgusb.stick import Marker, Wifi

# IEEE 802.11i-2004, annex H.4.1: the passphrase-to-PSK test vectors.
IEEE_VECTORS = [
    ("password", "IEEE", "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"),
    ("ThisIsAPassword", "ThisIsASSID", "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af"),
]


def test_the_key_is_derived_as_ieee_802_11i_says() -> None:
    for passphrase, ssid, key in IEEE_VECTORS:
        assert psk(Wifi(ssid, passphrase)) == key
    assert psk(Wifi("x", "AB" * 32)) == "ab" * 32  # a raw key is taken as it is


def test_the_config_holds_no_marker_text() -> None:
    hostile = Wifi('a"\n}\nnetwork={ssid="evil"', 'p" } ctrl_interface=/tmp/x')
    text = wpa_config(hostile)
    assert text.count("network={") == 1 and "evil" not in text and "ctrl_interface" not in text
    assert f"\tssid={hostile.ssid.encode().hex()}\n" in text and f"\tpsk={psk(hostile)}\n" in text
    assert 'p"' not in text and "key_mgmt=WPA-PSK" in text


def test_written_from_a_parsed_marker_readable_by_root_only(tmp_path: Path) -> None:
    marker = Marker.parse(b'{"format": "borgusb-stick", "version": 1, "wifi": {"ssid": "IEEE", "psk": "password"}}')
    conf, unit = tmp_path / "wifi" / "wpa_supplicant.conf", tmp_path / "network" / "10-borgusb-wifi.network"
    write_wifi(marker.wifi, conf, unit)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and stat.S_IMODE(conf.parent.stat().st_mode) == 0o700
    assert "psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e" in conf.read_text()
    assert "password" not in conf.read_text()
    assert unit.read_text() == network_unit() and "Type=wlan" in unit.read_text() and "DHCP=yes" in unit.read_text()
    write_wifi(None, tmp_path / "none.conf", tmp_path / "none.network")
    assert not (tmp_path / "none.conf").exists() and not (tmp_path / "none.network").exists()
