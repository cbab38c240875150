"""peerMemoryCell's protocol without I/O: owner-signed memories, tombstones, queries and their scoring.

The cell (borgusb/cells/memory/) carries these; opening a private memory happens only where the
owner's key is unlocked. docs/memory.md has the formats, the scoring formula and the threat model.
"""
