"""Dogecoin without I/O: network parameters, addresses, P2PKH payments and the P2SH HTLC.

Everything here builds or reads bytes; nothing opens a socket. Transactions are
built and signed with well-kept libraries (libdogecoin for the P2PKH payment,
python-bitcoinlib for scripts, the legacy sighash and serialization, coincurve
for signatures); see docs/doge.md. Amounts are integers of koinu (10^-8 DOGE).
"""
