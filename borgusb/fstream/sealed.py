"""Byte ranges of a private file, without I/O: plaintext bytes first..last live in whole AES-256-GCM
chunks of its ciphertext (`borgusb.files.stream`), so the viewer's conduit asks the network for
those chunks only (`RangeOpener.cipher_first`..`cipher_last`), opens each (its tag checked, the
last one flagged as last, so nothing can be moved, cut or appended) and keeps the bytes asked for.

The ciphertext may arrive in any pieces, and from several endpoints one after the other: the
opener counts what it was fed (`fed`), so a reader that lost its endpoint asks the next one from
``cipher_first + fed`` on.
"""

from __future__ import annotations

from ..files.stream import CHUNK, TAG, ChunkOpener

SEALED = CHUNK + TAG  # one whole chunk's ciphertext


class RangeOpener:
    """Plaintext first..last (inclusive) of a file whose ciphertext is `cipher_size` bytes."""

    def __init__(self, key: bytes, cipher_size: int, first: int, last: int) -> None:
        self._opener = ChunkOpener(key, cipher_size)  # Tampered: a size that ends inside a tag
        if not 0 <= first <= last < self._opener.size:
            raise ValueError(f"bytes {first}-{last} are not inside {self._opener.size} bytes")
        self.cipher_size = cipher_size
        self.first, self.last = first, last
        self._index = first // CHUNK
        self._skip = first - self._index * CHUNK  # plaintext of the first chunk before `first`
        self._left = last - first + 1
        self.cipher_first = self._index * SEALED
        self.cipher_last = min((last // CHUNK + 1) * SEALED, cipher_size) - 1
        self.fed = 0
        self._buf = bytearray()

    @property
    def plain_size(self) -> int:
        return self._opener.size

    def _sealed_len(self, index: int) -> int:
        return SEALED if index < self._opener.count - 1 else self.cipher_size - index * SEALED

    def update(self, data: bytes) -> bytes:
        """The plaintext that `data` (the next ciphertext bytes) completes; Tampered if a chunk fails."""
        if self.fed + len(data) > self.cipher_last - self.cipher_first + 1:
            raise ValueError("more ciphertext than the range needs")
        self.fed += len(data)
        self._buf += data
        out = bytearray()
        while self._left and len(self._buf) >= self._sealed_len(self._index):
            n = self._sealed_len(self._index)
            plain = bytearray(n - TAG)
            self._opener.open_into(self._index, memoryview(self._buf)[:n], memoryview(plain))
            del self._buf[:n]
            keep = plain[self._skip : self._skip + self._left]
            out += keep
            self._left -= len(keep)
            self._skip = 0
            self._index += 1
        return bytes(out)

    @property
    def done(self) -> bool:
        return self._left == 0
