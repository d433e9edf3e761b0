"""The Redis engine of the bus (redis.asyncio, hiredis parser).

- Ephemeral publishes are queued (bounded) and flushed in pipelines by one task.
- Durable publishes (the relay) are one pipeline, awaited, raising BusUnavailable on failure.
- One pub/sub connection carries every channel this process has a local socket for. When it
  drops, the reader reconnects with jittered backoff, subscribes everything again, and tells
  the hub (on_resubscribed) so it can replay what was committed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.bus.base import Bus, BusUnavailable
from server.lifecycle import cancel

log = logging.getLogger(__name__)

WAKE_CHANNEL = "relay:wake"
SUBSCRIBE_CHUNK = 500


class RedisBus(Bus):
    def __init__(
        self,
        url: str,
        *,
        queue_limit: int = 100_000,
        socket_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.queue_limit = queue_limit
        self.redis: Redis = Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._sub_client: Redis = Redis.from_url(
            url, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0), health_check_interval=0
        )
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
        try:
            pipe = self.redis.pipeline(transaction=False)
            for channel, payload in items:
                pipe.publish(channel, payload)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc

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
        for i in range(0, len(wanted), SUBSCRIBE_CHUNK):
            await ps.subscribe(*wanted[i : i + SUBSCRIBE_CHUNK])
        self._pubsub = ps
        # Channels added while we were subscribing.
        missing = self._channels.difference(wanted)
        if missing:
            await ps.subscribe(*missing)

    async def _read_loop(self) -> None:
        backoff = 0.1
        lost_at: float | None = None
        while not self._closing:
            try:
                await self._connect()
            except (RedisError, OSError) as exc:
                if lost_at is None:
                    lost_at = time.time()
                log.warning(
                    "Redis unreachable (%s); retrying in %.1fs", type(exc).__name__, backoff
                )
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self._connected.set()
            if lost_at is not None:
                self.reconnects += 1
                log.info("Redis is back: %d channels subscribed again", len(self._channels))
                for callback in self.on_resubscribed:
                    callback(lost_at)
                lost_at = None
            try:
                await self._pump(self._pubsub)
            except (RedisError, OSError) as exc:
                log.warning("Redis connection lost: %s", type(exc).__name__)
            lost_at = time.time()
            self._connected.clear()
            ps, self._pubsub = self._pubsub, None
            try:
                await ps.aclose()
            except Exception:
                pass

    async def _pump(self, ps: Any) -> None:
        deliver = self.deliver
        wake = super().wake_relay
        while not self._closing:
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None or msg.get("type") != "message":
                continue
            channel = msg["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if channel == WAKE_CHANNEL:
                wake()
                continue
            deliver(channel, msg["data"])
