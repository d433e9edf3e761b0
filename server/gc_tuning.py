"""Garbage collector settings for long-running processes that hold many connections.

CPython's cyclic collector walks every tracked object of the generations it collects. A web
process with a thousand sockets holds a few hundred thousand long-lived objects (modules,
SQLAlchemy's compiled statements, connections), and with the default thresholds a full
collection ran every few seconds under load, stopping the event loop for 40-160 ms each time
(bench/fanout.py latency, measured with gc.callbacks). So, once a process has started:

- `gc.freeze()` moves everything alive at that point (imports, caches, pools) into a
  generation the collector never walks again;
- a higher first threshold (GC_THRESHOLD, default 10000 instead of 700) collects the young
  generation less often, so fewer objects of in-flight requests are promoted to the old
  generations, and a full collection, which waits for the old generation to grow by a
  quarter, becomes rare.

Reference counting still frees everything that is not in a cycle at once; only cycles wait
a little longer."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def parse_threshold(raw: str | None) -> tuple[int, ...] | None:
    """GC_THRESHOLD: "10000" or "10000,20,20"; "default" keeps Python's own (700,10,10).
    Anything else is a ValueError (server/settings.py names the variable)."""
    if raw is None or raw.strip() == "":
        return (10_000, 20, 20)
    if raw.strip().lower() == "default":
        return None
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ValueError(f"must be 1 to 3 integers or 'default', got {raw!r}") from None
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values):
        raise ValueError(f"must be 1 to 3 integers >= 0, got {raw!r}")
    return values


def tune_after_start(threshold: tuple[int, ...] | None) -> None:
    """Call once the process has started (imports done, pools open), before serving load."""
    if threshold is None:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)
    log.debug("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
