"""Streams: every bus channel carries its durable events as a stream with positions.

After Centrifugo's and AnyCable's brokers. The one publisher of durable events (the relay,
by lease) publishes through the bus, which gives each event the next offset of its channel's
stream and keeps a bounded history beside pub/sub (count: HISTORY_LIMIT; age: HISTORY_TTL
after the stream's last publish). A stream's epoch names one unbroken run of offsets: it is
new whenever the history may have lost events (Redis restarted without its data, the stream
idle past STREAM_META_TTL), so a reader holding an offset of another epoch knows that offset
means nothing any more.

A stream event travels as `@<offset> <epoch>\\n` followed by the envelope
(server/bus/envelope.py); ephemeral events (typing, presence) have no position and travel as
the bare envelope, which starts with `{`."""

from __future__ import annotations

from dataclasses import dataclass

# A stream's epoch and offset counter outlive its history this long after the last publish
# or read: a reader that comes back within it learns whether it missed anything; after it,
# the stream starts over with a new epoch (and readers of the old one resync).
STREAM_META_TTL = 24 * 3600


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream stands: the offset of its newest event (0: none yet) in `epoch`."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class History:
    """A stream's events after a position, oldest first, as the envelope bytes.

    `complete` is False when they do not cover everything after that position (another
    epoch, or trimmed): the reader cannot catch up from the history and must resync."""

    position: Position  # the stream's newest position when read
    events: list[tuple[int, bytes]]
    complete: bool


def covers(since: Position, top: Position, first_offset: int | None, count: int) -> bool:
    """Whether `count` events starting at `first_offset` are everything in `top`'s stream
    after `since`."""
    if since.epoch != top.epoch or since.offset > top.offset:
        return False
    if since.offset == top.offset:
        return True
    return first_offset == since.offset + 1 and since.offset + count == top.offset


def with_position(offset: int, epoch: str, envelope: bytes) -> bytes:
    return b"@%d %s\n%s" % (offset, epoch.encode(), envelope)


def split_position(payload: bytes) -> tuple[int, bytes, bytes] | None:
    """(offset, epoch, envelope) of a stream event; None for an ephemeral one."""
    if payload[:1] != b"@":
        return None
    head, _, envelope = payload.partition(b"\n")
    offset, _, epoch = head[1:].partition(b" ")
    return int(offset), epoch, envelope
