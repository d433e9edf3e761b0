"""The bus between processes: one interface (base.Bus), two engines (memory, redis)."""

from __future__ import annotations

from server.bus.base import Bus, BusUnavailable

__all__ = ["Bus", "BusUnavailable", "create_bus"]


def create_bus(redis_url: str | None, **options: object) -> Bus:
    if redis_url:
        from server.bus.redis import RedisBus

        return RedisBus(redis_url, **options)  # type: ignore[arg-type]
    from server.bus.memory import MemoryBus

    return MemoryBus(
        history_limit=options.get("history_limit", 1000),  # type: ignore[arg-type]
        history_ttl=options.get("history_ttl", 300.0),  # type: ignore[arg-type]
        history_bytes=options.get("history_bytes", 1 << 20),  # type: ignore[arg-type]
    )
