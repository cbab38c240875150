"""DStream: shards moved as binary frames, pulled in windows from several holders.

* `frames`: the frame (a signed envelope, a newline, the bytes it names), `Holder`, and
  `post_frame`, a frame over the one pinned POST (`PeerClient.exchange`);
* `channel`: `DataChannel`, the plain-HTTP data channel's client (h11 for the head, the
  body read straight into the receiver's buffers);
* `receiver`: `Receiver`, the checked, resumable get from every holder at once; `buffers`:
  its shard buffer pool;
* `sender`: `put_file`, a file stored as shards;
* `gate`: `FairGate`, the holder's round-robin over concurrent streams.
"""

from .channel import MAX_BATCH, BadReply, DataChannel
from .frames import (
    ENVELOPE_HEADER,
    FRAME_PATH,
    MAX_FRAME,
    Holder,
    StreamError,
    frame,
    post_frame,
    unframe,
)
from .gate import FairGate
from .receiver import SHARD_DATA_PORT, Receiver, check_free_space, parse_locate
from .sender import hash_file, put_file

__all__ = [
    "ENVELOPE_HEADER",
    "FRAME_PATH",
    "MAX_BATCH",
    "MAX_FRAME",
    "SHARD_DATA_PORT",
    "BadReply",
    "DataChannel",
    "FairGate",
    "Holder",
    "Receiver",
    "StreamError",
    "check_free_space",
    "frame",
    "hash_file",
    "parse_locate",
    "post_frame",
    "put_file",
    "unframe",
]
