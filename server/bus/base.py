"""The Bus interface, after Centrifugo's broker: transport-agnostic publish/subscribe.

Two kinds of publish:
- `publish`: ephemeral events (typing, presence). Queued and sent in batches; if the
  broker is down they are dropped, which is what ephemeral means.
- `publish_durable`: the relay's outbox rows. Awaited; raises BusUnavailable unless the
  broker took every one, so the relay marks rows published only when they really were.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

MessageHandler = Callable[[str, bytes], None]


class BusUnavailable(Exception):
    """The broker could not be reached; nothing was (surely) published."""


class Bus(ABC):
    def __init__(self) -> None:
        self.handler: MessageHandler | None = None
        # Called after the bus lost its subscriptions and got them back: the hub replays
        # durable events committed meanwhile.
        self.on_resubscribed: list[Callable[[float], None]] = []
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
