"""The Bus interface, after Centrifugo's broker: transport-agnostic publish/subscribe.

Two kinds of publish:
- `publish`: ephemeral events (typing, presence). Queued and sent in batches; if the
  broker is down they are dropped, which is what ephemeral means.
- `publish_durable`: the relay's outbox rows. Awaited; raises BusUnavailable unless the
  broker took every one, so the relay marks rows published only when they really were.
  Each one becomes the next event of its channel's stream (server/bus/streams.py): an
  offset, an epoch, a place in the bounded history that `history` reads back. A row the
  stream already carries (same conversation, outbox id not above the last) is dropped there,
  so neither the history nor pub/sub carries an event twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from server.bus.streams import History, Position

MessageHandler = Callable[[str, bytes], None]


class BusUnavailable(Exception):
    """The broker could not be reached; nothing was (surely) published."""


class Bus(ABC):
    def __init__(self) -> None:
        self.handler: MessageHandler | None = None
        # Called after the bus lost its subscriptions and got them back (and before any
        # message of the new subscriptions is delivered): the hub catches every stream up
        # from its history.
        self.on_resubscribed: list[Callable[[], None]] = []
        # Called when a relay wake-up arrives (another process committed outbox rows).
        self.on_wake: list[Callable[[], None]] = []

    async def start(self) -> None:
        """Connect. Returns once ready, or raises if the broker is unreachable at start."""

    async def close(self) -> None:
        """Flush what is queued, then disconnect."""

    async def check(self) -> None:
        """Raise unless the bus can carry events now (readiness, server/health.py)."""

    @abstractmethod
    def publish(self, channel: str, payload: bytes) -> None: ...

    @abstractmethod
    async def publish_durable(self, items: list[tuple[str, bytes]]) -> None: ...

    @abstractmethod
    async def position(self, channel: str) -> Position:
        """The newest position of the channel's stream (starting the stream if it has none)."""

    @abstractmethod
    async def history(self, since: list[tuple[str, Position]]) -> list[History]:
        """For each (channel, position), the stream's events after it (see History)."""

    @abstractmethod
    async def history_since(self, channels: list[str], since: float) -> list[History]:
        """For each channel, the stream's events published at or after the Unix time `since`
        (whole seconds, as AnyCable's clients send it). `complete` is False when the history
        may have lost some of them (trimmed, expired)."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    def wake_relay(self) -> None:
        """Tell the relay, wherever it runs, that outbox rows were committed."""
        for callback in self.on_wake:
            callback()

    def deliver(self, channel: str, payload: bytes) -> None:
        if self.handler is not None:
            self.handler(channel, payload)
