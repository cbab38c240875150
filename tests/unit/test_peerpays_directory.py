"""Paying by address: the key behind a Doge address, found among the keys the network has seen.

The pure part (borgusb/ledger/directory.py) against bip-utils' own addresses, then five peerPaysCells
in-process (through each cell's real verifier and dispatcher, as in test_peerpays_cell.py): an entry
learns a wallet's key when it is asked its balance, tells the key's directory holders, and another
entry finds it by the address's hash; an answer that does not hash to the address is never taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from borgusb.keys import doge_address
from borgusb.ledger.directory import KeyDirectory, address_hash, is_key_hash, key_hash, proves
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected

from .test_peerpays_cell import ALICE, BOB, Net, cells_net, post

KEYS = [fixed_key(f"directory {i}") for i in range(4)]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    """Seven cells: a key's five directory holders are not all of them."""
    async with cells_net(tmp_path, 7) as cells:
        yield cells


def test_the_hash_is_the_one_inside_the_keys_doge_address() -> None:
    for k in KEYS:
        addr = doge_address(bytes.fromhex(k.public_key_hex))
        assert addr.startswith("D") and address_hash(addr) == key_hash(k.public_key_hex)
        assert proves(k.public_key_hex, key_hash(k.public_key_hex))
    assert not proves(KEYS[0].public_key_hex, key_hash(KEYS[1].public_key_hex))
    assert not proves("not a key", key_hash(KEYS[0].public_key_hex)) and not proves(None, "00" * 20)
    addr = doge_address(bytes.fromhex(KEYS[0].public_key_hex))
    for bad in (addr[:-1] + ("2" if addr[-1] != "2" else "3"), "D" + "1" * 33, "hello"):
        with pytest.raises(ValueError):
            address_hash(bad)
    assert is_key_hash("ab" * 20) and not is_key_hash("AB" * 20) and not is_key_hash("ab" * 21)


def test_the_directory_keeps_the_most_recently_used_keys() -> None:
    d = KeyDirectory(capacity=2)
    assert d.learn(KEYS[0].public_key_hex) and d.learn(KEYS[1].public_key_hex)
    assert not d.learn(KEYS[0].public_key_hex)  # known: not new (and now the most recent)
    assert not d.learn("02" + "zz" * 32)
    d.learn(KEYS[2].public_key_hex)  # the least recently used, KEYS[1], goes
    assert len(d) == 2 and d.get(key_hash(KEYS[1].public_key_hex)) is None
    assert d.get(key_hash(KEYS[0].public_key_hex)) == KEYS[0].public_key_hex


async def told(net: Net, entry: int, count: int) -> None:
    """Wait until the entry has told `count` directory holders (background requests)."""
    deadline = time.monotonic() + 30
    while net.cells[entry].counters["pay_directory_told"] < count:
        assert time.monotonic() < deadline, net.cells[entry].counters
        await asyncio.sleep(0.01)


async def test_a_key_asked_about_at_one_entry_is_found_by_its_address_at_another(net: Net) -> None:
    bob = BOB.public_key_hex
    with pytest.raises(PeerRejected) as err:  # nobody has seen bob yet
        await post(ALICE, net.cells[3], "pay.whois", {"h160": key_hash(bob)})
    assert err.value.reason == "unknown_account" and err.value.status == 404

    await net.balance(bob, entry=0)  # bob's wallet asks its balance: its entry learns the key
    holders = net.cells[0]._directory_holders(key_hash(bob))
    await told(net, 0, len(holders))
    assert all(net.by_key[h].directory.get(key_hash(bob)) == bob for h in holders)

    asker = next(c for c in net.cells[1:] if c.key.public_key_hex not in holders)
    assert asker.directory.get(key_hash(bob)) is None
    got = await post(ALICE, asker, "pay.whois", {"h160": key_hash(bob)})
    assert got == {"h160": key_hash(bob), "key": bob}
    assert asker.directory.get(key_hash(bob)) == bob  # and keeps it

    for bad in ({"h160": "zz" * 20}, {"h160": key_hash(bob).upper()}, {}, [1]):
        with pytest.raises(PeerRejected) as err:
            await post(ALICE, asker, "pay.whois", bad)
        assert err.value.reason == "malformed"
    with pytest.raises(PeerRejected) as err:  # a member telling a key that is not one
        await post(net.cells[0].key, asker, "pay.known", {"key": "02" + "zz" * 32})
    assert err.value.reason == "malformed"
    with pytest.raises(PeerRejected) as err:  # and anyone else telling at all: free keys cannot flush it
        await post(ALICE, asker, "pay.known", {"key": fixed_key("junk").public_key_hex})
    assert (
        err.value.reason == "not_a_member" and asker.directory.get(key_hash(fixed_key("junk").public_key_hex)) is None
    )


async def test_an_answer_that_is_not_behind_the_address_is_never_taken(net: Net) -> None:
    carol = fixed_key("carol directory").public_key_hex
    h = key_hash(carol)
    entry = net.cells[0]
    liars = entry._directory_holders(h)
    for holder in liars:  # every directory holder answers another key for carol's address
        net.by_key[holder].directory._keys[h] = ALICE.public_key_hex
    with pytest.raises(PeerRejected) as err:
        await post(BOB, entry, "pay.whois", {"h160": h})
    assert err.value.reason == "unknown_account"
    assert entry.counters["pay_directory_wrong"] == len(liars)
    assert entry.directory.get(h) is None
