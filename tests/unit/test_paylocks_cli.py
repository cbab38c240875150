"""`borgusb pay lock|claim|refund|lock-status` refuse bad input before they talk to any node (exit 2)."""

from __future__ import annotations

from pathlib import Path

from .test_peerpays_cli import PAYEE, pay


def test_bad_lock_input_is_refused_before_the_network(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    for args, said in (
        (("lock", "--to", PAYEE, "0.000000001", "--secret-file", str(secret)), "bad amount (fractional)"),
        (("lock", "--to", PAYEE, "1", "--secret-file", str(secret), "--expires-in", "200"), "at most 168 hours"),
        (("lock", "--to", PAYEE, "1", "--hash", "xyz"), "SHA-256 in hex"),
        (
            ("lock", "--to", "DHETwgcC7EbQaVsvZy5rhSwbqRNVkWE86Q", "1", "--hash", "ab" * 32),
            "unknown account",
        ),  # checksum
        (("claim", "ab" * 32, "--from", PAYEE), "--secret HEX or --secret-file"),
        (("claim", "ab" * 32, "--from", PAYEE, "--secret", "not hex"), "1 to 520 bytes in hex"),
        (("claim", "not-an-id", "--from", PAYEE, "--secret", "ab"), "64 hex digits"),
        (("lock-status", "ab" * 31, "--from", PAYEE), "64 hex digits"),
    ):
        proc = pay(*args, tmp_path=tmp_path)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_a_new_secret_is_drawn_into_a_private_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    proc = pay("lock", "--to", PAYEE, "1", "--secret-file", str(secret), tmp_path=tmp_path)
    assert proc.returncode == 3  # no node: but the secret was drawn first, and is kept for the next try
    assert len(bytes.fromhex(secret.read_text().strip())) == 32 and secret.stat().st_mode & 0o777 == 0o600
