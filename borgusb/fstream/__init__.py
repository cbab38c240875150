"""fStream without I/O: the owner-signed stream map, key frames, and HTTP range arithmetic (docs/fstream.md)."""
