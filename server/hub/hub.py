"""The hub: which local subscriptions listen to which bus channel, and delivery.

Delivering an event is: look up the channel's subscriptions, splice the already-serialized
message into each one's frame, queue it. No SQL, no JSON encoding per recipient."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from server.bus import Bus
from server.bus.envelope import unpack
from server.hub import protocol
from server.hub.connection import Connection
from server.store import outbox
from server.store.db import Database

log = logging.getLogger(__name__)

# Pings go out to one group of sockets per tick, the groups taking turns, instead of to every
# socket at once: each socket still gets one every ping_interval, but 1,000 sockets pinged in
# one go held the event loop (and woke every client) for tens of milliseconds every 3 s, the
# largest source of tail latency in bench/fanout.py's latency run.
PING_TICK = 0.1

REPLAY_MARGIN = 2.0
REPLAY_LIMIT = 20_000
DEDUPE_ENTRIES = 200_000


@dataclass(eq=False)
class Subscription:
    """One RoomChannel subscription of one socket."""

    conn: Connection
    identifier: str
    token: str  # the subscriber's pubsub_token: typing events skip the typer's own
    channels: list[str]
    account_id: int
    user_id: int | None = None
    contact_id: int | None = None
    prefix: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.prefix = protocol.broadcast_prefix(protocol.identifier_json(self.identifier))

    @property
    def is_agent(self) -> bool:
        return self.user_id is not None


class Hub:
    def __init__(self, bus: Bus, db: Database, *, ping_interval: float = 3.0) -> None:
        self.bus = bus
        self.db = db
        self.ping_interval = ping_interval
        self.connections: set[Connection] = set()
        self._ping_groups: list[set[Connection]] = [
            set() for _ in range(max(1, round(ping_interval / PING_TICK)))
        ]
        self._next_ping_group = 0
        self.channels: dict[str, set[Subscription]] = {}
        # Last durable event delivered per (channel, conversation): drops the duplicates an
        # at-least-once relay or a replay can produce, without SQL.
        self._delivered: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._ping_task: asyncio.Task[None] | None = None
        self._replays: set[asyncio.Task[None]] = set()
        # While a replay runs, live bus messages wait here, so that a newer live event can
        # not mark an older, replay-only event as already delivered.
        self._held: list[tuple[str, bytes]] | None = None
        self.frames_sent = 0
        self.slow_consumers = 0
        self.unsubscribed_closed = 0  # /cable sockets closed for not subscribing in time
        self.bus_messages = 0  # messages received from the bus (server/metrics.py)
        bus.handler = self.on_bus_message
        bus.on_resubscribed.append(self._schedule_replay)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._ping_task = asyncio.get_running_loop().create_task(self._ping_loop())

    async def shutdown(self, grace: float) -> None:
        """Tell every socket the server restarts (clients reconnect elsewhere), then close."""
        if self._ping_task:
            self._ping_task.cancel()
        for task in list(self._replays):
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

    async def attach(self, sub: Subscription) -> None:
        """Listen on the subscription's channels; subscribes on the bus for the first local
        listener of a channel, before the caller confirms."""
        sub.conn.subscriptions[sub.identifier] = sub
        for channel in sub.channels:
            subs = self.channels.get(channel)
            if subs is None:
                subs = self.channels[channel] = set()
                subs.add(sub)
                await self.bus.subscribe(channel)
            else:
                subs.add(sub)

    async def detach(self, sub: Subscription) -> None:
        sub.conn.subscriptions.pop(sub.identifier, None)
        for channel in sub.channels:
            subs = self.channels.get(channel)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del self.channels[channel]
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
        if self._held is not None:
            if len(self._held) < REPLAY_LIMIT:
                self._held.append((channel, payload))
            return
        self._deliver(channel, payload)

    def _deliver(self, channel: str, payload: bytes) -> None:
        subs = self.channels.get(channel)
        if not subs:
            return
        header, message = unpack(payload)
        outbox_id = header.get("o")
        if outbox_id is not None and not self._first_delivery(channel, header.get("c"), outbox_id):
            return
        skip = header.get("s")
        for sub in tuple(subs):
            if skip is not None and sub.token == skip:
                continue
            sub.conn.send(sub.prefix, message)
        self.frames_sent += len(subs)

    def _first_delivery(self, channel: str, conversation_id: int | None, outbox_id: int) -> bool:
        key = (channel, conversation_id or 0)
        last = self._delivered.get(key)
        if last is not None and outbox_id <= last:
            return False
        self._delivered[key] = outbox_id
        self._delivered.move_to_end(key)
        if len(self._delivered) > DEDUPE_ENTRIES:
            self._delivered.popitem(last=False)
        return True

    def send_to(self, sub: Subscription, message: bytes) -> None:
        sub.conn.send(sub.prefix, message)

    # -- catching up after a bus outage ---------------------------------------------------

    def _schedule_replay(self, lost_at: float) -> None:
        if self._held is None:
            self._held = []
        task = asyncio.get_running_loop().create_task(self._replay(lost_at))
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)

    async def _replay(self, lost_at: float) -> None:
        """Durable events committed while the bus was away: read them back from the outbox
        and deliver them to local channels (duplicates are dropped by _first_delivery)."""
        from server.bus.envelope import pack

        started = time.monotonic()
        delivered = 0
        rows: list[dict[str, object]] = []
        try:
            rows = await self.db.read(outbox.since, lost_at - REPLAY_MARGIN, REPLAY_LIMIT)
            for row in rows:
                payload = pack(
                    row["payload"].encode(),  # type: ignore[attr-defined]
                    outbox_id=row["id"],  # type: ignore[arg-type]
                    conversation_id=row["conversation_id"],  # type: ignore[arg-type]
                )
                for channel in row["channels"]:  # type: ignore[attr-defined]
                    if channel in self.channels:
                        self._deliver(channel, payload)
                        delivered += 1
        except Exception:
            log.exception("replay after bus reconnect failed")
        finally:
            if len(self._replays) <= 1:  # the last replay running releases what was held
                held, self._held = self._held or [], None
                for channel, payload in held:
                    self._deliver(channel, payload)
        log.info(
            "replayed %d events (%d rows) after bus reconnect in %.0f ms",
            delivered,
            len(rows),
            (time.monotonic() - started) * 1000,
        )
