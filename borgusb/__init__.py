"""BorgUSB: a Python implementation of the Borg Internet Operating System.

A USB stick is a person's identity (a secp256k1 wallet from 24 BIP39 words);
the network of self-organizing PeerTree cells is their computer.
"""

__version__ = "0.1.0"
