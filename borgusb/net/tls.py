"""TLS for node-to-node traffic, pinned by the node's secp256k1 key (no CA).

Each node process makes a fresh self-signed TLS certificate at start (P-256:
TLS 1.3 has no secp256k1 signature scheme). The node then signs the
certificate's SHA-256 fingerprint with its secp256k1 node key inside a
`net.hello` envelope; a peer that fetched the hello over that very TLS
connection checks that the certificate it saw is the one the node vouched
for, and from then on pins the fingerprint for that node (aiohttp refuses a
connection whose certificate differs before any request is sent).

The TLS private key exists only in this process's memory. `ssl` can load a
certificate chain only from files, so it passes through a file in /dev/shm
(RAM), encrypted with a one-time random password, deleted right after
loading: never on a disk, never in the clear.
"""

from __future__ import annotations

import asyncio.sslproto
import datetime
import functools
import hashlib
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RAM_DIRS = ("/dev/shm", "/run")
TLS_READ_BUFFER = 64 << 10  # bytes each TLS connection reads into (asyncio's default: 256 KiB)


@dataclass(frozen=True)
class TLSIdentity:
    cert_der: bytes
    fingerprint: str  # sha256 of the DER certificate, hex
    server_context: ssl.SSLContext


def _ram_dir() -> str:
    for candidate in RAM_DIRS:
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return candidate
    raise RuntimeError("no RAM-backed directory (/dev/shm) to load the TLS key from")


def make_tls_identity(common_name: str) -> TLSIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    password = secrets.token_bytes(32)
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # no client resumes a session (each pins the certificate on a full handshake), so the two tickets
    # TLS 1.3 sends after every handshake are work for nothing: 8 % of a handshake's CPU, measured
    context.num_tickets = 0
    fd, path = tempfile.mkstemp(prefix="borgusb-tls-", dir=_ram_dir())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        context.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)
    return TLSIdentity(cert_der, hashlib.sha256(cert_der).hexdigest(), context)


def bound_read_buffers() -> None:
    """Make each TLS connection of this process read into TLS_READ_BUFFER bytes.

    asyncio gives every TLS connection (`sslproto.SSLProtocol`, server and client side) a read
    buffer of ``max_size`` bytes, allocated and zeroed when it opens: 256 KiB of private memory per
    connection, and a cell holds one per registry, clock and peer connection. Measured on
    loopback, 64 KiB reads cost no throughput or CPU (606 against 621 MB/s, 0.43 against 0.42 s
    for 256 MiB); 16 KiB cost 15 % more CPU. Records are at most 16 KiB, so nothing else changes."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


@functools.cache
def client_context() -> ssl.SSLContext:
    """The process's one client context. It does not consult CAs (pinning happens per peer) and
    holds no key or certificate, so every PeerClient may share it: made once in the cell host
    before it forks, a forked cell does not pay for a context of its own (0.45 MiB private each)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
