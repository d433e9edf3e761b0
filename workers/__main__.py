"""`python -m workers`: the outbox relay and maintenance, alone, for a scaled deploy
(DATABASE_URL + REDIS_URL). Several may run; a lease keeps one relay active."""

from __future__ import annotations

import logging
import sys

from server import gc_tuning
from server.__main__ import configure_logging
from server.bus import create_bus
from server.lifecycle import describe, run_loop, until_signalled
from server.settings import Settings
from server.store.db import Database
from workers.maintenance import Maintenance
from workers.relay import Relay, lease_for

log = logging.getLogger("workers")


async def run(settings: Settings) -> None:
    db = Database(
        settings.database_url, pg_writers=settings.db_writers, timeout=settings.db_timeout
    )
    await db.start()
    bus = create_bus(settings.redis_url)
    relay = Relay(
        db,
        bus,
        lease_for(bus, settings.relay_lease_ttl),
        poll_interval=settings.relay_poll_interval,
        lease_ttl=settings.relay_lease_ttl,
    )
    await bus.start()
    relay.start()
    maintenance = Maintenance(db, retention=settings.outbox_retention, lease=relay.lease)
    maintenance.start()
    gc_tuning.tune_after_start(settings.gc_threshold)
    log.info("worker running (%s)", describe(settings))
    await until_signalled()
    log.info("worker stopping")
    await maintenance.stop()
    await relay.stop()
    await bus.close()
    await db.close()
    log.info("worker stopped")


def main() -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if not settings.redis_url:
        log.warning("REDIS_URL is unset: this worker's relay reaches no web process")
    run_loop(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
