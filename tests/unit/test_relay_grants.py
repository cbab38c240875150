"""Who may relay for a key, and which observed address a node believes (issue 15 item 6)."""

from __future__ import annotations

from borgusb.keys import SigningKey
from borgusb.net import relaygrant
from borgusb.net.nat import Placement, agreed_address, detect
from borgusb.net.peer import Pin

NOW = 1_800_000_000_000
NODE, GATEWAY, LIAR = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
G, L = GATEWAY.public_key_hex, LIAR.public_key_hex


def hello_pin(key: SigningKey, **info: object) -> Pin:
    return Pin(key.public_key_hex, "ab" * 32, dict(info))


def test_a_grant_names_its_node_and_its_gateway() -> None:
    g = relaygrant.grant(NODE, G, NOW)
    assert relaygrant.granted_node(g, G, NOW) == NODE.public_key_hex
    assert relaygrant.granted_node(g, L, NOW) is None  # shown by another gateway
    assert relaygrant.granted_node(g, G, NOW + relaygrant.TTL_MS + 1) is None  # expired
    assert relaygrant.granted_node({**g, "until": g["until"] + 1}, G, NOW) is None  # altered
    assert relaygrant.granted_node(relaygrant.grant(NODE, G, NOW + 10 * relaygrant.TTL_MS), G, NOW) is None
    forged = relaygrant.grant(LIAR, G, NOW) | {"node": NODE.public_key_hex}  # the liar's signature, the victim's name
    assert relaygrant.granted_node(forged, G, NOW) is None
    assert relaygrant.granted_node({**g, "sig": g["sig"] + "0"}, G, NOW) is None  # odd hex: once a ValueError
    for junk in (None, [], "x", {**g, "extra": 1}, {k: v for k, v in g.items() if k != "sig"}, {**g, "until": True}):
        assert relaygrant.granted_node(junk, G, NOW) is None


def test_a_bare_claim_to_relay_for_a_key_is_not_taken() -> None:
    """The attack: any address answered a hello listing the victim's key and got its posts."""
    victim = NODE.public_key_hex
    liar = hello_pin(LIAR, relays=[victim])
    assert not liar.relays_for(victim, NOW)
    # the victim's real grant, but naming its real gateway, shown by the liar
    assert not hello_pin(LIAR, relays=[relaygrant.grant(NODE, G, NOW)]).relays_for(victim, NOW)
    assert hello_pin(GATEWAY, relays=[relaygrant.grant(NODE, G, NOW)]).relays_for(victim, NOW)


def test_one_contact_cannot_choose_the_address_a_node_advertises() -> None:
    one = [("198.51.100.1", 13360, hello_pin(LIAR, observed="203.0.113.66"))]
    assert agreed_address(one) is None
    same_key_twice = one + [("198.51.100.2", 13360, hello_pin(LIAR, observed="203.0.113.66"))]
    assert agreed_address(same_key_twice) is None
    two = one + [("198.51.100.2", 13360, hello_pin(GATEWAY, observed="203.0.113.66"))]
    assert agreed_address(two) == "203.0.113.66"
    disagree = one + [("198.51.100.2", 13360, hello_pin(GATEWAY, observed="203.0.113.7"))]
    assert agreed_address(disagree) is None


async def test_detect_keeps_its_own_address_on_one_contacts_word() -> None:
    contacts = [("198.51.100.1", 13360, hello_pin(LIAR, observed="203.0.113.66"))]
    placement = await detect(None, "10.0.0.5", 13360, NODE.public_key_hex, contacts)  # type: ignore[arg-type]
    assert placement == Placement("nat-unconfirmed", "10.0.0.5")
