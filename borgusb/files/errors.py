"""Refusals of the file core: each carries one reason word, which callers count and show."""

from __future__ import annotations


class FilesError(ValueError):
    """A refusal; `reason` is the word a counter or a page shows."""

    reason = "refused"


class Malformed(FilesError):
    reason = "malformed"


class TooLarge(FilesError):
    reason = "too_large"


class BadSignature(FilesError):
    reason = "bad_signature"


class BadName(FilesError):
    reason = "bad_name"


class NotFound(FilesError):
    reason = "not_found"


class Exists(FilesError):
    reason = "exists"


class Tampered(FilesError):
    """Ciphertext that does not open under its key: changed, truncated, reordered or another key's."""

    reason = "tampered"


class NotReader(FilesError):
    """This key is not among a private folder's readers (never shared to, or revoked)."""

    reason = "not_reader"
