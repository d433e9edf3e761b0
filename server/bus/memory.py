"""The in-process bus of the embedded default: one process, so publishing is delivering.

Streams are kept here too (server/bus/streams.py): clients that resume by offset read the
history from this process's memory, bounded in events and bytes per stream (HISTORY_LIMIT,
HISTORY_BYTES), in age (HISTORY_TTL), in streams (a stream idle for STREAM_META_TTL is
forgotten) and in bytes over all streams (MEMORY_HISTORY_BUDGET: the least recently
published streams lose their oldest events first). As on Redis, an outbox row a stream
already carries is not appended again (bounded per stream)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from server.bus.base import Bus
from server.bus.envelope import outbox_key
from server.bus.streams import STREAM_META_TTL, History, Position, covers, with_position

# Bytes of history this process keeps over all its streams: many busy streams of large events
# (a 300 KB message is allowed) must not add up to more than this.
MEMORY_HISTORY_BUDGET = 64 * 1024 * 1024

# Conversations whose last outbox id a stream remembers (the publish-time dedupe); past it
# the memory is dropped, which only weakens the dedupe (the hub has its own).
SEEN_LIMIT = 50_000


@dataclass(eq=False, slots=True)
class _Stream:
    epoch: str = field(default_factory=lambda: secrets.token_hex(4))
    offset: int = 0
    # (offset, monotonic time for the TTL, wall-clock seconds for history_since, envelope)
    events: deque[tuple[int, float, int, bytes]] = field(default_factory=deque)
    last_time: int = 0  # wall-clock seconds of the newest event
    seen: dict[int, int] = field(default_factory=dict)  # conversation -> last outbox id
    size: int = 0  # bytes of the events held


class MemoryBus(Bus):
    def __init__(
        self,
        *,
        history_limit: int = 1000,
        history_ttl: float = 300.0,
        history_bytes: int = 1 << 20,
    ) -> None:
        super().__init__()
        self.history_limit = history_limit
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes
        self.history_size = 0  # bytes held over all streams
        self._channels: set[str] = set()
        # Least recently used first: idle streams are forgotten from the front.
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._touched: dict[str, float] = {}

    def publish(self, channel: str, payload: bytes) -> None:
        if channel in self._channels:
            self.deliver(channel, payload)

    async def publish_durable(self, items: list[tuple[str, bytes]]) -> None:
        now = time.monotonic()
        wall = int(time.time())
        for channel, payload in items:
            stream = self._stream(channel, now)
            key = outbox_key(payload)
            if key is not None:
                conversation, outbox_id = key
                last = stream.seen.get(conversation)
                if last is not None and last >= outbox_id:
                    continue  # published before: the stream carries it already
                if len(stream.seen) >= SEEN_LIMIT:
                    stream.seen.clear()
                stream.seen[conversation] = outbox_id
            stream.offset += 1
            stream.last_time = wall
            stream.events.append((stream.offset, now, wall, payload))
            stream.size += len(payload)
            self.history_size += len(payload)
            self._trim(stream, now)
            self.publish(channel, with_position(stream.offset, stream.epoch, payload))
        self._within_budget()

    async def position(self, channel: str) -> Position:
        stream = self._stream(channel, time.monotonic())
        return Position(stream.epoch, stream.offset)

    async def history(self, since: list[tuple[str, Position]]) -> list[History]:
        now = time.monotonic()
        answers = []
        for channel, position in since:
            stream = self._stream(channel, now)
            self._trim(stream, now)
            events = [(o, payload) for o, _, _, payload in stream.events if o > position.offset]
            top = Position(stream.epoch, stream.offset)
            first = events[0][0] if events else None
            answers.append(History(top, events, covers(position, top, first, len(events))))
        return answers

    async def history_since(self, channels: list[str], since: float) -> list[History]:
        now = time.monotonic()
        answers = []
        for channel in channels:
            stream = self._stream(channel, now)
            self._trim(stream, now)
            top = Position(stream.epoch, stream.offset)
            if stream.offset == 0 or stream.last_time < since:
                answers.append(History(top, [], True))
                continue
            events = [(o, payload) for o, _, wall, payload in stream.events if wall >= since]
            # Complete when an older event is still kept (the boundary is in the history), or
            # the kept events start at the stream's first.
            kept = stream.events
            complete = bool(kept) and (kept[0][2] < since or kept[0][0] == 1)
            answers.append(History(top, events, complete))
        return answers

    def _stream(self, channel: str, now: float) -> _Stream:
        streams = self._streams
        stream = streams.get(channel)
        if stream is None:
            stream = streams[channel] = _Stream()
        else:
            streams.move_to_end(channel)
        self._touched[channel] = now
        # Forget the streams idle for longer than their meta TTL (least recent first).
        while streams:
            oldest = next(iter(streams))
            if now - self._touched[oldest] <= STREAM_META_TTL:
                break
            self.history_size -= streams[oldest].size
            del streams[oldest], self._touched[oldest]
        return stream

    def _trim(self, stream: _Stream, now: float, budget: int | None = None) -> None:
        """Drop the oldest events past the stream's bounds (the newest one always stays)."""
        events = stream.events
        limit = self.history_bytes if budget is None else budget
        while events and (
            len(events) > self.history_limit
            or now - events[0][1] > self.history_ttl
            or (stream.size > limit and len(events) > 1)
        ):
            _, _, _, payload = events.popleft()
            stream.size -= len(payload)
            self.history_size -= len(payload)

    def _within_budget(self) -> None:
        now = time.monotonic()
        for stream in list(self._streams.values()):  # least recently published first
            if self.history_size <= MEMORY_HISTORY_BUDGET:
                return
            self._trim(stream, now, budget=0)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
