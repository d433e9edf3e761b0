"""The in-process bus of the embedded default: one process, so publishing is delivering."""

from __future__ import annotations

from server.bus.base import Bus


class MemoryBus(Bus):
    def __init__(self) -> None:
        super().__init__()
        self._channels: set[str] = set()

    def publish(self, channel: str, payload: bytes) -> None:
        if channel in self._channels:
            self.deliver(channel, payload)

    async def publish_durable(self, items: list[tuple[str, bytes]]) -> None:
        for channel, payload in items:
            self.publish(channel, payload)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
