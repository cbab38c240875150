"""The stick's marker (borgusb/stick.py): one writer, one parser, every bad marker refused with its reason."""

from __future__ import annotations

import json

import pytest

from borgusb.stick import FORMAT, MAX_JOIN, MAX_MARKER, Marker, MarkerError, Network, Wifi


def doc(**fields: object) -> bytes:
    return json.dumps({"format": FORMAT, "version": 1, **fields}).encode()


def test_round_trip_default_and_full() -> None:
    plain = Marker()
    assert Marker.parse(plain.to_bytes()) == plain
    assert json.loads(plain.to_bytes()) == {"format": "borgusb-stick", "version": 1, "join": [], "always_on": False}

    full = Marker(
        join=("10.0.0.2", "node.example:13355", "[fd00::1]:13355"),
        network=Network("10.0.0.5/24", "10.0.0.1"),
        always_on=True,
        selftest=("conduit", "timeline"),
    )
    assert Marker.parse(full.to_bytes()) == full
    assert full.network is not None and full.network.ip == "10.0.0.5"
    assert Marker.parse(Marker(network=Network("fd00::5/64")).to_bytes()).network == Network("fd00::5/64")


def test_lists_become_tuples_and_the_marker_is_frozen() -> None:
    m = Marker(join=["a:1"], selftest=["conduit"])  # type: ignore[arg-type]
    assert m.join == ("a:1",) and m.selftest == ("conduit",)
    with pytest.raises(AttributeError):
        m.always_on = True  # type: ignore[misc]


def test_parse_fills_defaults_and_accepts_a_bom() -> None:
    assert Marker.parse(doc()) == Marker()
    assert Marker.parse(b"\xef\xbb\xbf" + doc(always_on=True)).always_on is True
    assert Marker.parse(doc(network=None)).network is None
    assert Marker.parse(doc(network={"address": "192.168.1.9"})).network == Network("192.168.1.9")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b" \n", "is empty"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"{format: 1}", "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2"),
        (b"[" * 50_000, "is not valid JSON (nested too deeply)"),
        (b'{"format": "borgusb-stick", "version": NaN}', "is not valid JSON (NaN is not a JSON number)"),
        (b"[]", "is not a JSON object (list)"),
        (b'"borgusb-stick"', "is not a JSON object (str)"),
        (b"{}", 'is not a BorgUSB marker (it has no "format": "borgusb-stick")'),
        (b'{"format": "something-else"}', """is not a BorgUSB marker (its "format" is 'something-else'"""),
        (b'{"format": ["borgusb-stick"]}', """is not a BorgUSB marker (its "format" is ['borgusb-stick']"""),
        (b'{"format": "borgusb-stick"}', 'has no "version" (this BorgUSB reads version 1)'),
        (doc(version="1"), """has a "version" that is not a whole number ('1')"""),
        (doc(version=True), 'has a "version" that is not a whole number (True)'),
        (
            doc(version=2, anything="new"),
            "has version 2, which this BorgUSB cannot read (it reads version 1; "
            "a newer BorgUSB wrote it: update BorgUSB)",
        ),
        (doc(version=0), "has version 0, which this BorgUSB cannot read (it reads version 1)"),
        (b'{"format": "borgusb-stick", "version": 1, "version": 1}', "has the field 'version' twice"),
        (
            doc(alway_on=True),
            "has an unknown field 'alway_on' (known: format, version, join, network, always_on, selftest, wifi)",
        ),
        (doc(join="10.0.0.2"), """has a "join" that is not a list of "HOST[:PORT]" contacts ('10.0.0.2')"""),
        (doc(join=[13355]), 'has join[0] that is not a "HOST[:PORT]" string (13355)'),
        (doc(join=["ok", ""]), "has join[1] '' that is not a contact HOST[:PORT]"),
        (doc(join=["a b"]), "has join[0] 'a b' that is not a contact HOST[:PORT]"),
        (doc(join=["a\nb"]), "has join[0] 'a\\nb' that is not a contact HOST[:PORT]"),
        (doc(join=["h" * 256]), "has join[0] 'hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh... that is not a contact"),
        (doc(join=["h"] * (MAX_JOIN + 1)), f'has {MAX_JOIN + 1} contacts in "join" (at most {MAX_JOIN})'),
        (doc(network="dhcp"), """has a "network" that is not an object with an "address" ('dhcp')"""),
        (doc(network={}), 'has a "network" without an "address" (leave "network" out for DHCP)'),
        (doc(network={"address": "10.0.0.5/24", "dns": "1.1.1.1"}), "has an unknown field network.'dns'"),
        (doc(network={"address": 10}), "has a network.address that is not a string (10)"),
        (
            doc(network={"address": "10.0.0.5/24\nDNS=10.6.6.6"}),
            "has a network.address '10.0.0.5/24\\nDNS=10.6.6.6' that is not an IP address with its prefix length",
        ),
        (doc(network={"address": "10.0.0.5/255.255.255.0"}), "that is not an IP address with its prefix length"),
        (doc(network={"address": "10.0.0.5/33"}), "that is not an IP address with its prefix length"),
        (
            doc(network={"address": "10.0.0.5/24", "gateway": "router"}),
            "has a network.gateway 'router' that is not an IP address",
        ),
        (doc(network={"address": "10.0.0.5/24", "gateway": 1}), "has a network.gateway that is not a string (1)"),
        (doc(always_on="yes"), """has an "always_on" that is not true or false ('yes')"""),
        (doc(always_on=1), 'has an "always_on" that is not true or false (1)'),
        (doc(selftest="conduit"), """has a "selftest" that is not a list ('conduit')"""),
        (
            doc(selftest=["conduit", "format-disk"]),
            "asks for an unknown selftest 'format-disk' (known: conduit, timeline, cli, cells, ai, think)",
        ),
        (doc(selftest=[{}]), "asks for an unknown selftest {} (known: conduit, timeline, cli, cells, ai, think)"),
    ],
)
def test_bad_markers_are_refused_with_their_reason(data: bytes, message: str) -> None:
    with pytest.raises(MarkerError) as exc:
        Marker.parse(data)
    assert str(exc.value).startswith("the marker .borgusb "), str(exc.value)
    assert message in str(exc.value), str(exc.value)


def test_size_is_bounded_before_anything_is_decoded() -> None:
    big = doc(join=[]) + b" " * MAX_MARKER
    with pytest.raises(MarkerError, match=rf"is larger than {MAX_MARKER} bytes"):
        Marker.parse(big)
    assert Marker.parse(doc()[:-1] + b" " * (MAX_MARKER - len(doc())) + b"}") == Marker()  # exactly the limit


def test_a_hostile_value_is_cut_short_in_the_message() -> None:
    with pytest.raises(MarkerError) as exc:
        Marker.parse(json.dumps({"format": "y" * 10_000, "version": 1}).encode())
    assert len(str(exc.value)) < 200


def test_the_writer_checks_as_the_parser_does() -> None:
    with pytest.raises(MarkerError, match="has version 2"):
        Marker(version=2)
    with pytest.raises(MarkerError, match="is not a BorgUSB marker"):
        Marker(format="other")
    with pytest.raises(MarkerError, match="network.address"):
        Network("not an address")
    with pytest.raises(MarkerError, match='"network" that is not an object'):
        Marker(network={"address": "10.0.0.5/24"})  # type: ignore[arg-type]
    with pytest.raises(MarkerError, match="unknown selftest"):
        Marker(selftest=("reboot",))


def test_wifi_round_trip_and_refusals() -> None:
    m = Marker(always_on=True, wifi=Wifi("café net", "correct horse"))
    assert Marker.parse(m.to_bytes()) == m
    assert json.loads(m.to_bytes())["wifi"] == {"ssid": "café net", "psk": "correct horse"}
    assert Marker.parse(doc(wifi={"ssid": "x", "psk": "ab" * 32})).wifi == Wifi("x", "ab" * 32)  # a raw key
    for bad, says in (
        ({"ssid": "", "psk": "12345678"}, "wifi.ssid"),
        ({"ssid": "x" * 33, "psk": "12345678"}, "wifi.ssid"),
        ({"ssid": "x", "psk": "short"}, "wifi.psk"),
        ({"ssid": "x", "psk": "tab\tinside"}, "wifi.psk"),
        ({"ssid": "x", "psk": "z" * 64}, "wifi.psk"),
        ({"ssid": "x"}, "without"),
        ({"ssid": "x", "psk": "12345678", "country": "DE"}, "wifi.'country'"),
        ("home", '"wifi"'),
    ):
        with pytest.raises(MarkerError) as err:
            Marker.parse(doc(wifi=bad))
        assert says in str(err.value)
        assert "12345678" not in str(err.value) and "short" not in str(err.value)  # the passphrase is never shown
