"""The hub: which local subscriptions listen to which bus channel, and delivery.

Delivering an event is: look up the channel's subscriptions, splice the already-serialized
message into each one's frame, queue it. No SQL, no JSON encoding per recipient.

Durable events come with their position in the channel's stream (server/bus/streams.py), and
the hub delivers each stream without a gap: it keeps the last offset it delivered per
channel; an event past the next offset (a gap), of another epoch, or any interruption of
the bus (on_resubscribed) makes it read the stream's history from there and deliver what it
missed, in order, before the live events held meanwhile. Where the history cannot cover the
gap, the channel's sockets are told to reconnect, and clients catch up as after any
reconnect (Chatwoot's widget: `GET messages?after=`). The bus is the only source: no SQL.

Extended-protocol subscriptions (actioncable-v1-ext-json) share the channel sets with the
plain ones. A durable event's frame to them ends in its stream position (built once per event
and channel), and each keeps the last position it was sent per channel, so that it is never
sent an event twice nor one older than the last. Resuming (`serve_history`): the client's
missed events are read from the bus history after its own position (or since a time) and sent
in order, while live events for that subscription are held, then the held ones not already
sent; `reject_history` when the history cannot cover it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from server.bus import Bus, BusUnavailable
from server.bus.envelope import unpack
from server.bus.streams import History, Position
from server.hub import protocol
from server.hub.connection import Connection
from server.hub.protocol import HistoryRequest

log = logging.getLogger(__name__)

# Pings go out to one group of sockets per tick, the groups taking turns, instead of to every
# socket at once: each socket still gets one every ping_interval, but 1,000 sockets pinged in
# one go held the event loop (and woke every client) for tens of milliseconds every 3 s, the
# largest source of tail latency in bench/fanout.py's latency run.
PING_TICK = 0.1

# Live events (and their bytes) held per stream while it catches up; past either the rest
# are dropped and the stream catches up again from its history once the first read is done.
HELD_LIMIT = 10_000
HELD_BYTES = 8 * 1024 * 1024
DEDUPE_ENTRIES = 200_000
# A history read that failed (the bus is down) is tried again after this, doubling up to
# CATCH_UP_MAX_BACKOFF, for as long as the channel has local subscribers.
CATCH_UP_BACKOFF = 0.2
CATCH_UP_MAX_BACKOFF = 2.0


@dataclass(eq=False, slots=True)
class Stream:
    """What this process delivered of one channel's stream: the last offset in `epoch`
    (b"": not known, when the bus could not tell where the stream stood as we started to
    listen). `held` collects live events while the stream catches up."""

    epoch: bytes
    offset: int
    held: list[bytes] | None = None
    held_size: int = 0
    overflowed: bool = False


# A live event held for an extended subscription while its history is read:
# (channel, epoch, offset, message, position tail).
Held = tuple[str, bytes, int, bytes, bytes]


@dataclass(eq=False, slots=True)
class Subscription:
    """One RoomChannel subscription of one socket. Slotted: an idle socket's memory is
    mostly its subscriptions and buffers (bench/fanout.py idle)."""

    conn: Connection
    identifier: str
    token: str  # the subscriber's pubsub_token: typing events skip the typer's own
    channels: list[str]
    account_id: int
    user_id: int | None = None
    contact_id: int | None = None
    prefix: bytes = field(init=False)
    # The extended protocol's state (unused on plain sockets):
    ext: bool = field(init=False)
    # Per channel, the position of the last durable event sent to this subscription.
    offsets: dict[str, tuple[bytes, int]] = field(init=False, default_factory=dict)
    # Per channel, where this process's stream stood when the subscription started to
    # listen: it is sent every later event (live, or by the hub's catch-up).
    live_from: dict[str, tuple[bytes, int]] = field(init=False, default_factory=dict)
    # Live durable events held while history is read for it (None: not holding), and their
    # bytes: at most what its socket may have queued (SEND_QUEUE_SIZE, SEND_QUEUE_BYTES).
    held: list[Held] | None = field(init=False, default=None)
    held_size: int = field(init=False, default=0)
    # Restored with its session and holding until the client asks for its history.
    restoring: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.prefix = protocol.broadcast_prefix(protocol.identifier_json(self.identifier))
        self.ext = self.conn.ext

    @property
    def is_agent(self) -> bool:
        return self.user_id is not None


class Hub:
    def __init__(self, bus: Bus, *, ping_interval: float = 3.0) -> None:
        self.bus = bus
        self.ping_interval = ping_interval
        self.connections: set[Connection] = set()
        self._ping_groups: list[set[Connection]] = [
            set() for _ in range(max(1, round(ping_interval / PING_TICK)))
        ]
        self._next_ping_group = 0
        self.channels: dict[str, set[Subscription]] = {}
        self.streams: dict[str, Stream] = {}  # one per channel in self.channels
        # Last durable event delivered per (channel, conversation): drops the duplicates an
        # at-least-once relay produces (an outbox row published twice has two offsets).
        self._delivered: OrderedDict[tuple[str, int], int] = OrderedDict()
        self.dedupe_entries = DEDUPE_ENTRIES
        self._ping_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # catch-ups and resync closes
        self.frames_sent = 0
        self.slow_consumers = 0
        self.unsubscribed_closed = 0  # /cable sockets closed for not subscribing in time
        self.bus_messages = 0  # messages received from the bus (server/metrics.py)
        self.caught_up = 0  # events delivered from a stream's history
        self.resynced = 0  # sockets told to reconnect: history could not cover their gap
        # The extended protocol (server/metrics.py): history requests answered
        # confirm_history / reject_history, sessions and subscriptions restored.
        self.history_confirmed = 0
        self.history_rejected = 0
        self.sessions_restored = 0
        self.subscriptions_restored = 0
        bus.handler = self.on_bus_message
        bus.on_resubscribed.append(self._on_resubscribed)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._ping_task = asyncio.get_running_loop().create_task(self._ping_loop())

    async def shutdown(self, grace: float) -> None:
        """Tell every socket the server restarts (clients reconnect elsewhere), then close."""
        if self._ping_task:
            self._ping_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        conns = list(self.connections)
        if conns:
            log.info("closing %d sockets", len(conns))
            await asyncio.gather(
                *(c.close(protocol.SERVER_RESTART, timeout=grace) for c in conns),
                return_exceptions=True,
            )

    async def _ping_loop(self) -> None:
        """One group per tick, on a fixed schedule. A loop that falls behind sends the groups
        it missed (at most one round), so that no socket goes without its ping."""
        loop = asyncio.get_running_loop()
        groups = self._ping_groups
        tick = self.ping_interval / len(groups)
        start = loop.time()
        done = 0
        while True:
            await asyncio.sleep(max(0.0, start + (done + 1) * tick - loop.time()))
            due = max(done + 1, int((loop.time() - start) / tick))
            frame = protocol.ping()
            for n in range(max(done + 1, due - len(groups) + 1), due + 1):
                for conn in list(groups[n % len(groups)]):
                    conn.send(frame)
            done = due

    # -- connections and subscriptions ----------------------------------------------------

    def add_connection(self, conn: Connection) -> None:
        self.connections.add(conn)
        conn.ping_group = self._next_ping_group
        self._ping_groups[conn.ping_group].add(conn)
        self._next_ping_group = (self._next_ping_group + 1) % len(self._ping_groups)

    async def remove_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._ping_groups[conn.ping_group].discard(conn)
        for sub in list(conn.subscriptions.values()):
            await self.detach(sub)
        conn.subscriptions.clear()

    async def attach(self, sub: Subscription, *, hold: bool = False) -> None:
        """Listen on the subscription's channels; subscribes on the bus for the first local
        listener of a channel, before the caller confirms. `hold` (extended protocol): its
        live durable events wait until `serve_history` or `release`."""
        sub.conn.subscriptions[sub.identifier] = sub
        if hold:
            sub.held = []
        for channel in sub.channels:
            subs = self.channels.get(channel)
            if subs is None:
                subs = self.channels[channel] = set()
                subs.add(sub)
                stream = self.streams[channel] = Stream(b"", 0)
                # Where the stream stands before we listen: anything after it that the
                # subscription misses shows up as a gap, and is read from the history.
                try:
                    position = await self.bus.position(channel)
                    stream.epoch, stream.offset = position.epoch.encode(), position.offset
                except BusUnavailable:
                    pass  # not known: if it still is not when the bus is back, a resync
                if self.channels.get(channel) is subs:  # not left meanwhile
                    await self.bus.subscribe(channel)
            else:
                subs.add(sub)
            stream = self.streams.get(channel)
            if sub.ext and stream is not None:
                sub.live_from[channel] = (stream.epoch, stream.offset)

    async def detach(self, sub: Subscription) -> None:
        sub.conn.subscriptions.pop(sub.identifier, None)
        for channel in sub.channels:
            subs = self.channels.get(channel)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del self.channels[channel]
                self.streams.pop(channel, None)
                await self.bus.unsubscribe(channel)

    def on_overflow(self, conn: Connection) -> None:
        self.slow_consumers += 1
        log.warning(
            "closing slow consumer %s: send queue full (%d frames, %d bytes; limits "
            "SEND_QUEUE_SIZE=%d, SEND_QUEUE_BYTES=%d); it reconnects and catches up",
            conn.peer,
            conn.queued,
            conn.queued_bytes,
            conn.limit,
            conn.byte_limit,
        )

    # -- delivery -------------------------------------------------------------------------

    def on_bus_message(self, channel: str, payload: bytes) -> None:
        self.bus_messages += 1
        if payload[:1] == b"@":
            self._on_stream_event(channel, payload)
        else:
            self._deliver(channel, payload)  # ephemeral: no position, may be dropped

    def _on_stream_event(self, channel: str, payload: bytes) -> None:
        stream = self.streams.get(channel)
        if stream is None:
            return
        if stream.held is not None:
            if len(stream.held) < HELD_LIMIT and stream.held_size < HELD_BYTES:
                stream.held.append(payload)
                stream.held_size += len(payload)
            else:
                stream.overflowed = True
            return
        head, _, envelope = payload.partition(b"\n")
        offset_text, _, epoch = head[1:].partition(b" ")
        offset = int(offset_text)
        if epoch == stream.epoch:
            if offset == stream.offset + 1:
                stream.offset = offset
                self._deliver(channel, envelope, offset, epoch)
                return
            if offset <= stream.offset:
                return  # delivered already (from the history)
        # A gap, or another epoch: what came before this event is read from the history.
        stream.held = [payload]
        self._spawn(self._catch_up([channel]))

    def _deliver(self, channel: str, payload: bytes, offset: int = 0, epoch: bytes = b"") -> None:
        """To every subscription of the channel; a durable event (`offset` > 0) goes to the
        extended ones with its position."""
        subs = self.channels.get(channel)
        if not subs:
            return
        header, message = unpack(payload)
        outbox_id = header.get("o")
        if outbox_id is not None and not self._first_delivery(channel, header.get("c"), outbox_id):
            return
        skip = header.get("s")
        tail = None
        for sub in tuple(subs):
            if skip is not None and sub.token == skip:
                continue
            if sub.ext and offset:
                if tail is None:
                    tail = protocol.position_tail(channel, epoch, offset)
                if sub.held is None:
                    self._send_positioned(sub, channel, epoch, offset, message, tail)
                else:
                    self._hold(sub, (channel, epoch, offset, message, tail))
            else:
                sub.conn.send(sub.prefix, message)
        self.frames_sent += len(subs)

    @staticmethod
    def _send_positioned(
        sub: Subscription, channel: str, epoch: bytes, offset: int, message: bytes, tail: bytes
    ) -> None:
        """Send a durable event to an extended subscription unless it was sent this event or
        a later one of the stream already."""
        last = sub.offsets.get(channel)
        if last is not None and last[1] >= offset and last[0] == epoch:
            return
        sub.offsets[channel] = (epoch, offset)
        sub.conn.send(sub.prefix, message, tail)

    def _hold(self, sub: Subscription, item: Held) -> None:
        held = sub.held
        assert held is not None
        conn = sub.conn
        size = len(item[3]) + len(item[4])
        if len(held) < conn.limit and sub.held_size + size <= conn.byte_limit:
            held.append(item)
            sub.held_size += size
            return
        # As much held as the socket may have queued: it cannot be caught up in order any
        # more. It reconnects, and resumes from the position it has.
        sub.held, sub.held_size = None, 0
        sub.restoring = False
        self.resynced += 1
        log.warning(
            "closing /cable socket from %s: more events arrived while its history was read "
            "than its queue takes (SEND_QUEUE_SIZE=%d, SEND_QUEUE_BYTES=%d); it reconnects "
            "and resumes",
            conn.peer,
            conn.limit,
            conn.byte_limit,
        )
        # Shut at once: a newer event sent before the goodbye would move its position past
        # what it never got.
        goodbye = conn.shut(protocol.RESYNC, timeout=1.0)
        if goodbye is not None:
            self._spawn(goodbye)

    def release(self, sub: Subscription) -> None:
        """Stop holding: send the held live events it was not sent already, in order."""
        held, sub.held, sub.held_size = sub.held, None, 0
        sub.restoring = False
        for channel, epoch, offset, message, tail in held or ():
            self._send_positioned(sub, channel, epoch, offset, message, tail)

    async def serve_history(self, sub: Subscription, request: HistoryRequest) -> bool:
        """Send an extended subscription what it missed, from the bus history, in order and
        once: per channel after the client's position where it sent one, else the events
        since `request.since`. Live events wait meanwhile (and are sent after, those not in
        the history). True: confirm_history; False: the history cannot cover it (another
        epoch, trimmed, the bus down), reject_history, and the client catches up otherwise."""
        sub.restoring = False
        was_live = sub.held is None
        if was_live:
            sub.held = []
        channels: list[str] = []
        histories: list[History] = []
        ok = True
        try:
            by_offset = [(c, request.streams[c]) for c in sub.channels if c in request.streams]
            by_time = [c for c in sub.channels if c not in request.streams]
            if by_offset:
                histories += await self.bus.history(by_offset)
                channels += [c for c, _ in by_offset]
            if by_time and request.since:
                histories += await self.bus.history_since(by_time, request.since)
                channels += by_time
            ok = all(h.complete for h in histories)
        except BusUnavailable as exc:
            log.warning(
                "history for a /cable socket from %s: the bus does not answer (%s)",
                sub.conn.peer,
                exc,
            )
            ok = False
        if ok and was_live:
            # Already listening: it was sent every event after live_from. One at or before
            # that it lacks cannot be put in its place any more.
            ok = not any(
                c in sub.offsets
                and h.events
                and h.events[0][0] <= sub.live_from.get(c, (b"", 0))[1]
                for c, h in zip(channels, histories, strict=True)
            )
        attached = sub.conn.subscriptions.get(sub.identifier) is sub
        if ok and attached and sub.held is not None and not sub.conn.closed:
            for channel, history in zip(channels, histories, strict=True):
                epoch = history.position.epoch.encode()
                for offset, envelope in history.events:
                    _, message = unpack(envelope)
                    tail = protocol.position_tail(channel, epoch, offset)
                    self._send_positioned(sub, channel, epoch, offset, message, tail)
        if sub.held is not None:
            self.release(sub)
        if ok:
            self.history_confirmed += 1
        else:
            self.history_rejected += 1
        return ok

    def _first_delivery(self, channel: str, conversation_id: int | None, outbox_id: int) -> bool:
        key = (channel, conversation_id or 0)
        last = self._delivered.get(key)
        if last is not None and outbox_id <= last:
            return False
        self._delivered[key] = outbox_id
        self._delivered.move_to_end(key)
        if len(self._delivered) > self.dedupe_entries:
            self._delivered.popitem(last=False)
        return True

    def send_to(self, sub: Subscription, message: bytes) -> None:
        sub.conn.send(sub.prefix, message)

    # -- catching up from the streams' history -------------------------------------------

    def _on_resubscribed(self) -> None:
        """The bus lost its subscriptions and has them again: every stream may have a gap.
        Called before any event of the new subscriptions is delivered, so holding starts
        in time."""
        channels = []
        for channel, stream in self.streams.items():
            if stream.held is None:
                stream.held = []
                channels.append(channel)
        if channels:
            self._spawn(self._catch_up(channels))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, channels: list[str]) -> None:
        """Deliver each stream's history after the last offset delivered, then what was held
        meanwhile. A stream whose history cannot cover that (trimmed, another epoch, or our
        position was never known) gets its sockets resynced."""
        started = time.monotonic()
        backoff = CATCH_UP_BACKOFF
        while True:
            wanted = [
                (channel, stream)
                for channel in channels
                if (stream := self.streams.get(channel)) is not None and stream.held is not None
            ]
            if not wanted:
                return
            try:
                histories = await self.bus.history(
                    [(channel, Position(s.epoch.decode(), s.offset)) for channel, s in wanted]
                )
                break
            except BusUnavailable as exc:
                log.warning(
                    "catching up %d streams: the bus does not answer (%s); retrying in %.1fs",
                    len(wanted),
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, CATCH_UP_MAX_BACKOFF)
        delivered = resynced = 0
        again = []
        for (channel, stream), history in zip(wanted, histories, strict=True):
            if self.streams.get(channel) is not stream:
                continue  # nobody listens any more (or listens anew)
            if history.complete:
                epoch = history.position.epoch.encode()
                for offset, envelope in history.events:
                    stream.offset = offset
                    self._deliver(channel, envelope, offset, epoch)
                delivered += len(history.events)
            else:
                resynced += self._resync(channel)
                stream.epoch = history.position.epoch.encode()
                stream.offset = history.position.offset
            held, stream.held, stream.held_size = stream.held or [], None, 0
            overflowed, stream.overflowed = stream.overflowed, False
            for payload in held:
                self._on_stream_event(channel, payload)
            if overflowed and stream.held is None:
                stream.held = []  # what was dropped is read from the history again
                again.append(channel)
        self.caught_up += delivered
        log.info(
            "caught up %d streams from their history in %.0f ms: %d events delivered, "
            "%d sockets told to reconnect",
            len(wanted),
            (time.monotonic() - started) * 1000,
            delivered,
            resynced,
        )
        if again:
            await self._catch_up(again)

    def _resync(self, channel: str) -> int:
        """Tell the channel's sockets to reconnect: what they missed is gone from the stream's
        history, and a reconnecting client catches up on its own."""
        conns = {sub.conn for sub in self.channels.get(channel, ())}
        for conn in conns:
            # Shut at once: the held events delivered right after this must not reach it.
            goodbye = conn.shut(protocol.RESYNC, timeout=1.0)
            if goodbye is not None:
                self._spawn(goodbye)
        if conns:
            log.warning(
                "stream %s: history does not cover what this process missed; told %d sockets "
                "to reconnect and catch up. Frequent? raise HISTORY_LIMIT / HISTORY_TTL, or "
                "give Redis persistence",
                channel,
                len(conns),
            )
        self.resynced += len(conns)
        return len(conns)
