"""Shards without I/O: records and manifests, the placement lottery, the
content-addressed store, and the stream window. The cell (cells/shard.py) and
the DStream (dstream.py) put sockets around them."""
