"""The stick's format, defined once for the booted image, hosted mode and the image build.

A BorgUSB stick (or a Pi's card) has a data partition whose GPT name and
filesystem label are ``BORGUSB`` (``LABEL``), holding:

* ``.borgusb`` (``MARKER``): the marker, JSON (:class:`Marker`)::

      {"format": "borgusb-stick", "version": 1, "join": ["HOST[:PORT]", ...],
       "network": {"address": "10.0.0.5/24", "gateway": "10.0.0.1"},
       "always_on": false, "selftest": ["conduit", "timeline"],
       "wifi": {"ssid": "home", "psk": "a passphrase"}}

  ``format`` and ``version`` are required; the others may be left out
  (``network`` absent: DHCP on every wired interface; ``wifi``: the Wi-Fi
  network a Raspberry Pi joins, with DHCP, since a Zero 2 W has no Ethernet). Hosted mode leaves a
  partition labelled BORGUSB alone unless its marker parses;
* ``keystore.json`` (``KEYSTORE``): the encrypted wallet (borgusb.keystore);
* ``always-on`` (``ALWAYS_ON_FILE``): if present, pulling the stick does not
  power the node off;
* ``borgusb-hosted`` (``LAUNCHER``) and ``hosted/`` (``BUNDLE_DIR``): hosted
  mode run from the stick itself (borgusb.hosted.bundle): ``hosted/boot.py``
  (``BOOT``) carries the sha256 of every file of ``hosted/site-cpXY/``, recorded
  by the image build, and runs only a RAM copy that matches them.

The data partition is FAT (``FILESYSTEM``, as udev names it); hosted mode
refuses a partition labelled BORGUSB that holds anything else before reading it.
``borgusb flash`` (borgusb.flash) writes the partition table last, after the
rest was read back: a write cut short leaves no table, hence no partition
labelled BORGUSB for anyone to find (borgusb.flash.check tells it ``no_table``).

Anyone can write a stick, so :meth:`Marker.parse` treats the marker as hostile:
at most ``MAX_MARKER`` bytes, UTF-8 JSON without duplicate keys or NaN, every
field's type and size checked, unknown fields and versions refused. Every
refusal is a :class:`MarkerError` whose message is one sentence for the person
holding the stick. :meth:`Marker.to_bytes` is the one writer.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

LABEL = "BORGUSB"
MARKER = ".borgusb"
KEYSTORE = "keystore.json"
ALWAYS_ON_FILE = "always-on"
FILESYSTEM = "vfat"  # the data partition's filesystem, as udev (blkid) names FAT12/16/32
LAUNCHER = "borgusb-hosted"  # hosted mode from the stick: the sh launcher at the partition's root
BUNDLE_DIR = "hosted"  # ... and what it runs: boot.py and site-cpXY/
BOOT = "hosted/boot.py"  # the bootstrap with the build's hash of every file it copies into RAM
FORMAT = "borgusb-stick"
VERSION = 1  # the only marker version this code reads and writes
MAX_FILE = 1 << 20  # the largest file read from the stick (marker, keystore): anything bigger is not ours
MAX_MARKER = 64 << 10
MAX_JOIN = 64  # contacts in "join"
MAX_CONTACT = 255  # characters of one contact (a host name is at most 253, then ":PORT")
# what "selftest" may ask the booted image for (borgusb.image.ready)
SELFTESTS = ("conduit", "timeline", "cli", "cells", "ai", "think")
FIELDS = ("format", "version", "join", "network", "always_on", "selftest", "wifi")
NETWORK_FIELDS = ("address", "gateway")
WIFI_FIELDS = ("ssid", "psk")


class MarkerError(ValueError):
    """The marker cannot be used; the message says why, in one sentence."""


def _show(value: Any, limit: int = 40) -> str:
    """A hostile value in a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _fail(what: str) -> MarkerError:
    return MarkerError(f"the marker {MARKER} {what}")


@dataclass(frozen=True)
class Network:
    """A static address for every wired interface (systemd-networkd), instead of DHCP."""

    address: str  # with its prefix length: "10.0.0.5/24" (without: a single host, /32 or /128)
    gateway: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.address, str):
            raise _fail(f"has a network.address that is not a string ({_show(self.address)})")
        host, slash, prefix = self.address.partition("/")
        try:
            if slash and not (prefix.isascii() and prefix.isdigit()):
                raise ValueError
            ipaddress.ip_interface(self.address)
        except ValueError:
            raise _fail(
                f"has a network.address {_show(self.address)} that is not an IP address with its "
                'prefix length, like "10.0.0.5/24"'
            ) from None
        if self.gateway is not None:
            if not isinstance(self.gateway, str):
                raise _fail(f"has a network.gateway that is not a string ({_show(self.gateway)})")
            try:
                ipaddress.ip_address(self.gateway)
            except ValueError:
                raise _fail(
                    f'has a network.gateway {_show(self.gateway)} that is not an IP address, like "10.0.0.1"'
                ) from None

    @property
    def ip(self) -> str:
        """The address without its prefix length (the node's --ip)."""
        return self.address.partition("/")[0]


@dataclass(frozen=True)
class Wifi:
    """A WPA2 network: the SSID (1 to 32 bytes of UTF-8) and its passphrase (8 to 63 printable ASCII
    characters, as WPA defines it) or the raw key (64 hexadecimal digits)."""

    ssid: str
    psk: str

    def __post_init__(self) -> None:
        if not isinstance(self.ssid, str) or not 1 <= len(self.ssid.encode("utf-8", "surrogatepass")) <= 32:
            raise _fail(f"has a wifi.ssid that is not 1 to 32 bytes of text ({_show(self.ssid)})")
        psk = self.psk
        raw = isinstance(psk, str) and len(psk) == 64 and all(c in "0123456789abcdefABCDEF" for c in psk)
        if not raw and not (isinstance(psk, str) and 8 <= len(psk) <= 63 and all(" " <= c <= "~" for c in psk)):
            raise _fail(
                "has a wifi.psk that is not a WPA passphrase (8 to 63 printable ASCII characters) "
                "nor a key of 64 hexadecimal digits"
            )


@dataclass(frozen=True)
class Marker:
    """The settings a stick carries. Built by :meth:`parse` or by a writer; both check every field."""

    format: str = FORMAT
    version: int = VERSION
    join: tuple[str, ...] = ()  # contacts "HOST[:PORT]" the node joins the network through
    network: Network | None = None  # None: DHCP
    always_on: bool = False  # pulling the stick does not power the node off
    selftest: tuple[str, ...] = ()  # checks the booted image runs once the node is up (SELFTESTS)
    wifi: Wifi | None = None  # the Wi-Fi network to join (the Pi image)

    def __post_init__(self) -> None:
        _check_format(self.format)
        _check_version(self.version)
        object.__setattr__(self, "join", _contacts(self.join))
        if self.network is not None and not isinstance(self.network, Network):
            raise _fail(f'has a "network" that is not an object with an "address" ({_show(self.network)})')
        if type(self.always_on) is not bool:
            raise _fail(f'has an "always_on" that is not true or false ({_show(self.always_on)})')
        object.__setattr__(self, "selftest", _selftests(self.selftest))
        if self.wifi is not None and not isinstance(self.wifi, Wifi):
            raise _fail(f'has a "wifi" that is not an object with "ssid" and "psk" ({_show(self.wifi)})')

    # ------------------------------------------------------------ read

    @classmethod
    def parse(cls, data: bytes) -> Marker:
        """The marker in ``data`` (the file's bytes), or MarkerError saying what is wrong with it."""
        if len(data) > MAX_MARKER:
            raise _fail(f"is larger than {MAX_MARKER} bytes ({len(data)}): not a BorgUSB marker")
        try:
            text = bytes(data).decode("utf-8").removeprefix("\ufeff")  # a BOM: written by a Windows editor
        except UnicodeDecodeError:
            raise _fail("is not UTF-8 text") from None
        if not text.strip():
            raise _fail(f'is empty (it must hold at least {{"format": "{FORMAT}", "version": {VERSION}}})')
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise _fail(f"is not valid JSON ({exc})") from None
        except RecursionError:
            raise _fail("is not valid JSON (nested too deeply)") from None
        if not isinstance(doc, dict):
            raise _fail(f"is not a JSON object ({type(doc).__name__})")
        if "format" not in doc:
            raise _fail(f'is not a BorgUSB marker (it has no "format": "{FORMAT}")')
        _check_format(doc["format"])  # before the other fields: a foreign marker is told as such
        if "version" not in doc:
            raise _fail(f'has no "version" (this BorgUSB reads version {VERSION})')
        _check_version(doc["version"])  # before the fields: a newer version may define others
        unknown = [k for k in doc if k not in FIELDS]
        if unknown:
            raise _fail(f"has an unknown field {_show(unknown[0])} (known: {', '.join(FIELDS)})")
        fields = dict(doc)
        if "join" in fields:
            if not isinstance(fields["join"], list):
                raise _fail(f'has a "join" that is not a list of "HOST[:PORT]" contacts ({_show(fields["join"])})')
            fields["join"] = tuple(fields["join"])
        if fields.get("network") is not None:
            fields["network"] = _network(fields["network"])
        if "selftest" in fields:
            if not isinstance(fields["selftest"], list):
                raise _fail(f'has a "selftest" that is not a list ({_show(fields["selftest"])})')
            fields["selftest"] = tuple(fields["selftest"])
        if fields.get("wifi") is not None:
            fields["wifi"] = _wifi(fields["wifi"])
        return cls(**fields)

    # ------------------------------------------------------------ write

    def to_bytes(self) -> bytes:
        """The marker file's bytes (indented JSON, read by people too); ``parse`` gives this marker back."""
        doc: dict[str, Any] = {"format": self.format, "version": self.version, "join": list(self.join)}
        if self.network is not None:
            doc["network"] = {"address": self.network.address}
            if self.network.gateway is not None:
                doc["network"]["gateway"] = self.network.gateway
        doc["always_on"] = self.always_on
        if self.selftest:
            doc["selftest"] = list(self.selftest)
        if self.wifi is not None:
            doc["wifi"] = {"ssid": self.wifi.ssid, "psk": self.wifi.psk}
        return (json.dumps(doc, indent=2) + "\n").encode()


def _check_format(value: Any) -> None:
    if value != FORMAT:
        raise _fail(f'is not a BorgUSB marker (its "format" is {_show(value)}; a BorgUSB stick\'s is "{FORMAT}")')


def _check_version(value: Any) -> None:
    if type(value) is not int:
        raise _fail(f'has a "version" that is not a whole number ({_show(value)})')
    if value != VERSION:
        raise _fail(
            f"has version {value}, which this BorgUSB cannot read (it reads version {VERSION}"
            + ("; a newer BorgUSB wrote it: update BorgUSB)" if value > VERSION else ")")
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _fail(f"has the field {_show(key)} twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _fail(f"is not valid JSON ({name} is not a JSON number)")


def _network(value: Any) -> Network:
    if not isinstance(value, dict):
        raise _fail(f'has a "network" that is not an object with an "address" ({_show(value)})')
    unknown = [k for k in value if k not in NETWORK_FIELDS]
    if unknown:
        raise _fail(f"has an unknown field network.{_show(unknown[0])} (known: {', '.join(NETWORK_FIELDS)})")
    if "address" not in value:
        raise _fail('has a "network" without an "address" (leave "network" out for DHCP)')
    return Network(value["address"], value.get("gateway"))


def _wifi(value: Any) -> Wifi:
    if not isinstance(value, dict):
        raise _fail(f'has a "wifi" that is not an object with "ssid" and "psk" ({_show(value)})')
    unknown = [k for k in value if k not in WIFI_FIELDS]
    if unknown:
        raise _fail(f"has an unknown field wifi.{_show(unknown[0])} (known: {', '.join(WIFI_FIELDS)})")
    if "ssid" not in value or "psk" not in value:
        raise _fail('has a "wifi" without its "ssid" and "psk"')
    return Wifi(value["ssid"], value["psk"])


def _contacts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise _fail(f'has a "join" that is not a list of "HOST[:PORT]" contacts ({_show(value)})')
    if len(value) > MAX_JOIN:
        raise _fail(f'has {len(value)} contacts in "join" (at most {MAX_JOIN})')
    for i, contact in enumerate(value):
        if not isinstance(contact, str):
            raise _fail(f'has join[{i}] that is not a "HOST[:PORT]" string ({_show(contact)})')
        if not contact or len(contact) > MAX_CONTACT or not contact.isprintable() or any(c.isspace() for c in contact):
            raise _fail(
                f"has join[{i}] {_show(contact)} that is not a contact HOST[:PORT] "
                f"(1 to {MAX_CONTACT} printable characters, no spaces)"
            )
    return tuple(value)


def _selftests(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise _fail(f'has a "selftest" that is not a list ({_show(value)})')
    for name in value:
        if not isinstance(name, str) or name not in SELFTESTS:
            raise _fail(f"asks for an unknown selftest {_show(name)} (known: {', '.join(SELFTESTS)})")
    return tuple(value)
