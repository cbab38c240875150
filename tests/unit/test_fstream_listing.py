"""Public listings (`borgusb.fstream.listing`): signed by the owner, checked by whoever shows them, kept
in a bounded catalog."""

from __future__ import annotations

import pytest

from borgusb.fstream import listing as lst
from borgusb.fstream.listing import BadListing, Catalog, check_listing, sign_listing
from borgusb.keys import SigningKey

MAP, MEDIA = "a" * 64, "b" * 64


def make(key: SigningKey, name: str = "clip.webm", t: int = 5, map_id: str = MAP) -> dict:
    return sign_listing(key, map_id, MEDIA, name, "video/webm", 1234, t)


def test_a_listing_round_trips_and_its_title_is_printable_and_bounded() -> None:
    key = SigningKey.generate()
    x = check_listing(make(key, "a\x00b\n<c>" + "d" * 300))
    assert (x.map, x.id, x.owner, x.size, x.t) == (MAP, MEDIA, key.public_key_hex, 1234, 5)
    assert x.name.startswith("a b <c>") and len(x.name) == lst.MAX_NAME  # markup stays text: the page's job


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(name="other.webm"), "bad_signature"),  # an endpoint renames it
        (lambda d: d.update(o=SigningKey.generate().public_key_hex), "bad_signature"),
        (lambda d: d.update(type="text/html"), "bad_type"),
        (lambda d: d.update(map="nothex"), "malformed"),
        (lambda d: d.update(size=-1), "malformed"),
        (lambda d: d.update(name="tab\there"), "malformed"),
        (lambda d: d.pop("t"), "malformed"),
    ],
)
def test_a_changed_or_malformed_listing_is_refused(change, reason: str) -> None:
    doc = make(SigningKey.generate())
    change(doc)
    with pytest.raises(BadListing) as exc:
        check_listing(doc)
    assert exc.value.reason == reason


def test_the_catalog_keeps_the_newest_per_owner_and_a_map_for_its_first_owner() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    cat = Catalog()
    assert cat.add(check_listing(make(a, t=5)))
    assert not cat.add(check_listing(make(a, t=4)))  # older
    assert not cat.add(check_listing(make(b, t=9)))  # another owner cannot take the map over
    assert cat.add(check_listing(make(a, "new.webm", t=6)))
    assert [d["name"] for d in cat.newest(10)] == ["new.webm"]
    for i in range(lst.PER_OWNER + 5):
        cat.add(check_listing(make(b, t=100 + i, map_id=f"{i:064x}")))
    mine = [d for d in cat.newest(1000) if d["o"] == b.public_key_hex]
    assert len(mine) == lst.PER_OWNER and mine[0]["t"] == 100 + lst.PER_OWNER + 4  # the newest kept
    assert len(cat) == lst.PER_OWNER + 1
