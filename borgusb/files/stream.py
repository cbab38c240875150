"""A file's bytes encrypted in chunks, so a file of any size streams through bounded memory.

Each private file has its own fresh AES-256-GCM key (`new_key`), never used for anything else,
so the nonces can be a counter: chunk ``i`` is sealed under the 12-byte nonce ``i`` (11 bytes,
big-endian) followed by a flag byte that is 1 on the last chunk only. This is the STREAM
construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): a chunk cannot be moved, dropped,
repeated, or made the last one (truncation) without its tag failing. Every chunk is `CHUNK`
bytes of plaintext except the last (0..`CHUNK`; an empty file is one empty final chunk), and
carries a 16-byte tag.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import Malformed, Tampered

CHUNK = 64 * 1024
TAG = 16
KEY_BYTES = 32
AAD = b"borgusb.files.stream.v1"
_MAX_CHUNKS = 2**64  # far beyond any file; the counter itself has 88 bits


def new_key() -> bytes:
    """A fresh 256-bit file key from the OS CSPRNG (the caller's I/O edge, not the core's)."""
    return AESGCM.generate_key(bit_length=256)


def _nonce(index: int, final: bool) -> bytes:
    if index >= _MAX_CHUNKS:
        raise Malformed("too many chunks for one file key")
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def encrypted_size(plain_size: int) -> int:
    """The ciphertext's length for `plain_size` bytes of plaintext."""
    chunks = max(1, -(-plain_size // CHUNK))
    return plain_size + chunks * TAG


def _chunks(buf: bytearray, data: bytes, size: int, op: Callable[[bytes | memoryview], bytes]) -> bytes:
    """Every whole chunk of `buf` + `data` but the last whole one (it may be the final chunk) through
    `op`; the rest stays in `buf` (at most `size` bytes). Chunks are cut from `data` in place."""
    view, pos, out = memoryview(data), 0, []
    if buf:
        pos = min(size - len(buf), len(view))
        buf += view[:pos]
        if len(buf) < size or pos == len(view):
            return b""
        out.append(op(bytes(buf)))
        buf.clear()
    while len(view) - pos > size:
        out.append(op(view[pos : pos + size]))
        pos += size
    buf += view[pos:]
    return b"".join(out)


def _aead(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise Malformed("a file key is 32 bytes")
    return AESGCM(key)


class Encryptor:
    """Plaintext in (any pieces), ciphertext out; at most one chunk is held back."""

    def __init__(self, key: bytes) -> None:
        self._aead = _aead(key)
        self._buf = bytearray()
        self._index = 0
        self._done = False

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise RuntimeError("this encryptor is finished")
        return _chunks(self._buf, data, CHUNK, self._seal)

    def _seal(self, chunk: bytes | memoryview) -> bytes:
        self._index += 1
        return self._aead.encrypt(_nonce(self._index - 1, False), chunk, AAD)

    def finalize(self) -> bytes:
        if self._done:
            raise RuntimeError("this encryptor is finished")
        self._done = True
        last = self._aead.encrypt(_nonce(self._index, True), bytes(self._buf), AAD)
        self._buf.clear()
        return last


class Decryptor:
    """Ciphertext in (any pieces), verified plaintext out; `Tampered` on any change or truncation.

    Plaintext is released chunk by chunk, each only after its own tag checked; a reader that must
    not act on a prefix of a file that later fails keeps it aside until `finalize` returns."""

    def __init__(self, key: bytes) -> None:
        self._aead = _aead(key)
        self._buf = bytearray()
        self._index = 0
        self._done = False

    def _open(self, chunk: bytes | memoryview, final: bool) -> bytes:
        try:
            return self._aead.decrypt(_nonce(self._index, final), chunk, AAD)
        except InvalidTag:
            raise Tampered(f"chunk {self._index} does not open under this file's key") from None

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise RuntimeError("this decryptor is finished")
        return _chunks(self._buf, data, CHUNK + TAG, self._open_next)

    def _open_next(self, chunk: bytes | memoryview) -> bytes:
        plain = self._open(chunk, False)
        self._index += 1
        return plain

    def finalize(self) -> bytes:
        if self._done:
            raise RuntimeError("this decryptor is finished")
        self._done = True
        if len(self._buf) < TAG:
            raise Tampered("the ciphertext ends inside a tag (truncated)")
        last = self._open(bytes(self._buf), True)
        self._buf.clear()
        return last


class ChunkOpener:
    """The chunks of a ciphertext of known length, each opened into the caller's buffer: what a file
    decrypted in place needs (no allocation per chunk; fresh pages, not AES, were the cost). The
    same checks as `Decryptor`: a length that ends inside a tag, or any chunk moved, changed,
    dropped or made the last, is `Tampered`."""

    def __init__(self, key: bytes, cipher_size: int) -> None:
        self._aead = _aead(key)
        self.count = max(1, -(-cipher_size // (CHUNK + TAG)))
        if cipher_size - (self.count - 1) * (CHUNK + TAG) < TAG:
            raise Tampered("the ciphertext ends inside a tag (truncated)")
        self.size = cipher_size - self.count * TAG  # the plaintext's

    def open_into(self, index: int, chunk: memoryview, out: memoryview) -> None:
        """Chunk `index` (len(out) == len(chunk) - TAG) opened into `out`."""
        try:
            self._aead.decrypt_into(_nonce(index, index == self.count - 1), chunk, AAD, out)
        except InvalidTag:
            raise Tampered(f"chunk {index} does not open under this file's key") from None


def encrypt(key: bytes, data: bytes) -> bytes:
    """All at once (small files, tests); the same bytes as streaming them."""
    enc = Encryptor(key)
    return enc.update(data) + enc.finalize()


def decrypt(key: bytes, data: bytes) -> bytes:
    dec = Decryptor(key)
    return dec.update(data) + dec.finalize()
