"""What the image's probes (`ready`, `aiprobe`) ask the local cells with: a cell's monitoring port and one
plain HTTP GET, without urllib (the probes are counted in the RAM they report)."""

from __future__ import annotations

import socket


def mon_port(cell: str) -> int | None:
    """A cell's monitoring port, from the cell registry (a cell shipped outside BorgUSB brings its
    DNA row with its SPEC); None for a cell this image does not know, reported as not ready."""
    from ..cells import dna_of

    try:
        return dna_of(cell).mon_port
    except ValueError:
        return None


def http_get(
    host: str, port: int, path: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, body) of one plain HTTP/1.0 GET; `headers`, if given, receives the reply's
    headers (names in lower case). The probe runs while the cells start and is counted in the
    RAM it reports, so it does without urllib (which loads http.client, email and OpenSSL): a
    local monitoring port or the conduit, nothing else, is asked."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP reply from {host}:{port}")
    if headers is not None:
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
    return int(parts[1]), body
