"""The Redis engine of the bus (redis.asyncio, hiredis parser).

- Ephemeral publishes are queued (bounded) and flushed in pipelines by one task.
- Durable publishes (the relay) are one pipeline, awaited, raising BusUnavailable on failure.
- Durable publishes go through one Lua script per event (streams.lua): the next offset of
  the channel's stream, the event appended to the stream's history (a Redis stream, trimmed
  to HISTORY_LIMIT events and HISTORY_BYTES, expiring HISTORY_TTL after its last publish,
  each entry with its Redis time for `history_since`) and published, atomically, so offsets
  on pub/sub arrive in order. An outbox row the stream already carries is not appended
  again. Keys are `stream:{<channel>}`, its `:meta` hash (epoch, offset, bytes held, time
  of the newest event) and its `:seen` hash (last outbox id per conversation), one hash
  slot per channel.
- One pub/sub connection carries every channel this process has a local socket for. When it
  drops, the reader reconnects with jittered backoff, subscribes everything again, and tells
  the hub (on_resubscribed) so it can catch every stream up from its history.
- Every connection is health-checked: a pub/sub connection that died without a FIN would
  otherwise look subscribed for good while nothing arrives. The reader PINGs it every
  `health_interval` (the answer comes back in line with the messages); no answer and nothing
  else received within `timeout` is a lost connection. Commands have `timeout` as their
  socket timeout, pooled connections idle for `health_interval` are PINGed before reuse, and
  TCP keepalive is on for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections import deque
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.bus.base import Bus, BusUnavailable
from server.bus.health import keepalive_options
from server.bus.streams import STREAM_META_TTL, History, Position, covers
from server.lifecycle import cancel

log = logging.getLogger(__name__)

WAKE_CHANNEL = "relay:wake"
SUBSCRIBE_CHUNK = 500
# Streams read back per pipeline when catching up.
HISTORY_CHUNK = 500
_SCRIPTS = (Path(__file__).with_name("streams.lua")).read_text().split("-- @@\n")


def stream_keys(channel: str) -> list[str]:
    return [f"stream:{{{channel}}}:meta", f"stream:{{{channel}}}", f"stream:{{{channel}}}:seen"]


class DeadConnection(ConnectionError):
    """The pub/sub connection answered nothing within the deadline: gone without a word."""


class RedisBus(Bus):
    def __init__(
        self,
        url: str,
        *,
        queue_limit: int = 100_000,
        timeout: float = 3.0,
        health_interval: float = 3.0,
        history_limit: int = 1000,
        history_ttl: float = 300.0,
        history_bytes: int = 1 << 20,
    ) -> None:
        super().__init__()
        self.url = url
        self.history_limit = history_limit
        self.history_bytes = history_bytes
        self.history_ttl = max(1, round(history_ttl))
        self.queue_limit = queue_limit
        self.timeout = timeout
        self.health_interval = health_interval
        keepalive = keepalive_options(health_interval)
        self.redis: Redis = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            socket_keepalive=True,
            socket_keepalive_options=keepalive,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=health_interval,
        )
        # Its health is checked by the reader (_pump), which owns the connection's reads.
        self._sub_client: Redis = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            socket_keepalive=True,
            socket_keepalive_options=keepalive,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._publish_script = self.redis.register_script(_SCRIPTS[0])
        self._history_script = self.redis.register_script(_SCRIPTS[1])
        self._since_script = self.redis.register_script(_SCRIPTS[2])
        self._channels: set[str] = set()
        self._pubsub: Any = None
        self._connected = asyncio.Event()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._queued = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake_pending = False
        self._closing = False
        self.dropped = 0
        self.reconnects = 0  # pub/sub connections lost and made again (server/metrics.py)
        # Pub/sub connections found dead by the health check (no answer to a PING in time).
        self.dead_connections = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_loop(), name="bus-reader")
        self._flusher = loop.create_task(self._flush_loop(), name="bus-flusher")
        try:
            await asyncio.wait_for(self._connected.wait(), 5.0)
        except TimeoutError:
            log.warning(
                "Redis at %s is not reachable yet; carrying on and retrying", self._safe_url
            )

    async def close(self) -> None:
        # The loops watch _closing: a cancellation that lands inside redis-py's I/O can be
        # swallowed there, so cancel alone could leave them running (and the process up).
        self._closing = True
        self._queued.set()  # the flusher sends what is still queued, then ends
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=1.0)
            await cancel(self._flusher)
        await cancel(self._reader)
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                pass
        await self.redis.aclose()
        await self._sub_client.aclose()

    @property
    def _safe_url(self) -> str:
        return self.url.split("@")[-1]

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def check(self) -> None:
        """Subscribed (the pub/sub connection is up) and Redis answers a command."""
        if not self.connected:
            raise BusUnavailable(f"not subscribed on redis at {self._safe_url}")
        await self.redis.ping()

    # -- publishing -----------------------------------------------------------------------

    def publish(self, channel: str, payload: bytes) -> None:
        if len(self._queue) >= self.queue_limit:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("bus publish queue full: dropped %d ephemeral events", self.dropped)
            return
        self._queue.append((channel, payload))
        self._queued.set()

    def wake_relay(self) -> None:
        super().wake_relay()  # a relay in this process
        if not self._wake_pending:
            self._wake_pending = True
            self.publish(WAKE_CHANNEL, b"1")

    async def publish_durable(self, items: list[tuple[str, bytes]]) -> None:
        epoch = secrets.token_hex(4)  # for the streams this starts (or starts over)
        args = (self.history_limit, self.history_ttl, STREAM_META_TTL)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for channel, payload in items:
                await self._publish_script(
                    keys=stream_keys(channel),
                    args=(payload, epoch, *args, channel, self.history_bytes),
                    client=pipe,
                )
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc

    async def position(self, channel: str) -> Position:
        return (await self.history([(channel, Position("", 0))]))[0].position

    async def history(self, since: list[tuple[str, Position]]) -> list[History]:
        epoch = secrets.token_hex(4)
        answers: list[History] = []
        try:
            for i in range(0, len(since), HISTORY_CHUNK):
                chunk = since[i : i + HISTORY_CHUNK]
                pipe = self.redis.pipeline(transaction=False)
                for channel, position in chunk:
                    await self._history_script(
                        keys=stream_keys(channel),
                        args=(
                            position.offset,
                            epoch,
                            STREAM_META_TTL,
                            self.history_limit + 1,
                            position.epoch,
                        ),
                        client=pipe,
                    )
                for (_, position), (top_epoch, top, entries) in zip(
                    chunk, await pipe.execute(), strict=True
                ):
                    top_position = Position(top_epoch.decode(), int(top))
                    events = [(int(eid.split(b"-", 1)[0]), fields[1]) for eid, fields in entries]
                    first = events[0][0] if events else None
                    complete = covers(position, top_position, first, len(events))
                    answers.append(History(top_position, events, complete))
        except (RedisError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc
        return answers

    async def history_since(self, channels: list[str], since: float) -> list[History]:
        epoch = secrets.token_hex(4)
        answers: list[History] = []
        try:
            for i in range(0, len(channels), HISTORY_CHUNK):
                chunk = channels[i : i + HISTORY_CHUNK]
                pipe = self.redis.pipeline(transaction=False)
                for channel in chunk:
                    await self._since_script(
                        keys=stream_keys(channel),
                        args=(int(since), epoch, STREAM_META_TTL, self.history_limit),
                        client=pipe,
                    )
                for top_epoch, top, entries, complete in await pipe.execute():
                    events = [(int(eid.split(b"-", 1)[0]), fields[1]) for eid, fields in entries]
                    position = Position(top_epoch.decode(), int(top))
                    answers.append(History(position, events, bool(complete)))
        except (RedisError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc
        return answers

    async def _flush_loop(self) -> None:
        while not self._closing or self._queue:
            await self._queued.wait()
            self._queued.clear()
            try:
                await self._flush()
            except (RedisError, OSError) as exc:
                dropped = len(self._queue)
                self._queue.clear()
                self.dropped += dropped
                log.warning(
                    "ephemeral publish failed (%s); dropped %d", type(exc).__name__, dropped
                )
                await asyncio.sleep(0.2)

    async def _flush(self) -> None:
        while self._queue:
            pipe = self.redis.pipeline(transaction=False)
            n = 0
            while self._queue and n < 1000:
                channel, payload = self._queue.popleft()
                if channel == WAKE_CHANNEL:
                    self._wake_pending = False
                pipe.publish(channel, payload)
                n += 1
            await pipe.execute()

    # -- subscribing ----------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        ps = self._pubsub
        if ps is not None and self.connected:
            try:
                await ps.subscribe(channel)
            except (RedisError, OSError):
                pass  # the reader reconnects and subscribes everything

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        ps = self._pubsub
        if ps is not None and self.connected:
            try:
                await ps.unsubscribe(channel)
            except (RedisError, OSError):
                pass

    def _wanted(self) -> list[str]:
        wanted = list(self._channels)
        if self.on_wake:
            wanted.append(WAKE_CHANNEL)
        return wanted

    async def _connect(self) -> None:
        ps = self._sub_client.pubsub(ignore_subscribe_messages=True)
        # A private channel keeps the connection subscribed even with no sockets.
        wanted = [f"bus:ctl:{id(self)}", *self._wanted()]
        try:
            for i in range(0, len(wanted), SUBSCRIBE_CHUNK):
                await ps.subscribe(*wanted[i : i + SUBSCRIBE_CHUNK])
        except BaseException:
            try:
                await ps.aclose()
            except Exception:
                pass
            raise
        self._pubsub = ps
        # Channels added while we were subscribing.
        missing = self._channels.difference(wanted)
        if missing:
            await ps.subscribe(*missing)

    async def _read_loop(self) -> None:
        backoff = 0.1
        lost = False
        while not self._closing:
            try:
                await self._connect()
            except (RedisError, OSError) as exc:
                lost = True
                log.warning(
                    "Redis unreachable (%s); retrying in %.1fs", type(exc).__name__, backoff
                )
                await self._close_pubsub()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self._connected.set()
            if lost:
                self.reconnects += 1
                log.info("Redis is back: %d channels subscribed again", len(self._channels))
                for callback in self.on_resubscribed:
                    callback()
                lost = False
            try:
                await self._pump(self._pubsub)
            except DeadConnection as exc:
                self.dead_connections += 1
                log.warning(
                    "Redis pub/sub connection dead: %s. Closing it and reconnecting; events "
                    "published meanwhile are replayed. If this repeats, something between "
                    "here and Redis (NAT, load balancer, firewall) drops idle or long "
                    "connections",
                    exc,
                )
            except (RedisError, OSError) as exc:
                log.warning("Redis connection lost: %s", type(exc).__name__)
            lost = True
            self._connected.clear()
            await self._close_pubsub()

    async def _close_pubsub(self) -> None:
        ps, self._pubsub = self._pubsub, None
        if ps is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await ps.aclose()
        except Exception:
            pass

    async def _pump(self, ps: Any) -> None:
        """Deliver messages until the connection fails or stops answering.

        Health: a PING every `health_interval`. No answer and no message at all within
        `timeout` of the PING: the connection is dead (DeadConnection).
        Messages still arriving while the answer is late (a busy process) keep it alive."""
        deliver = self.deliver
        wake = super().wake_relay
        clock = asyncio.get_running_loop().time
        interval, deadline = self.health_interval, self.timeout
        received = 0  # messages and answers read on this connection
        ping_sent: float | None = None  # loop time of the unanswered PING
        received_at_ping = 0
        next_ping = clock() + interval
        while not self._closing:
            now = clock()
            if ping_sent is None:
                if now >= next_ping:
                    await ps.ping()
                    ping_sent, received_at_ping = now, received
                wait = next_ping - now
            else:
                if now - ping_sent >= deadline:
                    if received == received_at_ping:
                        raise DeadConnection(f"no answer to PING within {deadline:.1f}s")
                    # Busy rather than dead: give the answer another deadline.
                    ping_sent, received_at_ping = now, received
                wait = ping_sent + deadline - now
            msg = await ps.get_message(
                ignore_subscribe_messages=True, timeout=min(1.0, max(wait, 0.01))
            )
            if msg is None:
                continue
            received += 1
            kind = msg.get("type")
            if kind == "pong":
                ping_sent = None
                next_ping = clock() + interval
                continue
            if kind != "message":
                continue
            channel = msg["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if channel == WAKE_CHANNEL:
                wake()
                continue
            deliver(channel, msg["data"])
