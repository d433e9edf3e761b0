"""`python -m workers`: the outbox relay, maintenance and the voice call sweeper, alone,
for a scaled deploy (DATABASE_URL + REDIS_URL). Several may run; a lease keeps one relay
active."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from server import gc_tuning
from server.__main__ import configure_logging, load_settings, migrate_database
from server.bus import create_bus
from server.health import Health, standard_checks
from server.lifecycle import describe, run_process, until_signalled
from server.metrics import WorkerMetrics
from server.settings import Settings
from server.store.db import Database
from server.store.writes import Store
from server.voice.calls import VoiceCalls
from server.voice.elevenlabs import ElevenLabs
from workers.maintenance import Maintenance
from workers.relay import Relay, lease_for
from workers.voice_sweeper import VoiceSweeper

log = logging.getLogger("workers")


async def run(settings: Settings) -> None:
    db = Database(
        settings.database_url,
        pg_writers=settings.db_writers,
        timeout=settings.db_timeout,
        auto_migrate=settings.auto_migrate,
        timed=settings.metrics_enabled,
    )
    await db.start()
    bus = create_bus(
        settings.redis_url,
        timeout=settings.redis_timeout,
        health_interval=settings.redis_health_interval,
        history_limit=settings.history_limit,
        history_ttl=settings.history_ttl,
        history_bytes=settings.history_bytes,
    )
    relay = Relay(
        db,
        bus,
        lease_for(bus, settings.relay_lease_ttl),
        poll_interval=settings.relay_poll_interval,
        lease_ttl=settings.relay_lease_ttl,
        stall_timeout=settings.relay_stall_timeout,
    )
    await bus.start()
    relay.start()
    maintenance = Maintenance(db, retention=settings.outbox_retention, lease=relay.lease)
    maintenance.start()
    # Calls whose heartbeats stopped are ended here, by whichever worker holds the lease.
    elevenlabs = ElevenLabs(settings.elevenlabs_base_url, settings.elevenlabs_timeout)
    voice = VoiceCalls(
        db,
        Store(db),
        elevenlabs,
        settings.max_message_length,
        retry_after=settings.voice_reconcile_retry,
        attempts=settings.voice_reconcile_attempts,
    )
    sweeper = VoiceSweeper(voice, timeout=settings.voice_heartbeat_timeout, lease=relay.lease)
    sweeper.start()
    health = Health(standard_checks(db, bus), timeout=settings.health_timeout)
    metrics = (
        WorkerMetrics(db, relay, settings.metrics_token, settings.health_timeout, voice)
        if settings.metrics_enabled
        else None
    )
    probe = await serve_health(health, metrics, settings) if settings.worker_health_port else None
    gc_tuning.tune_after_start(settings.gc_threshold)
    log.info("worker running (%s)", describe(settings))
    await until_signalled()
    health.draining = True
    log.info("worker stopping")
    if probe is not None:
        await probe.cleanup()
    await sweeper.stop()
    await voice.close()
    await elevenlabs.close()
    await maintenance.stop()
    await relay.stop()
    await bus.close()
    await db.close()
    log.info("worker stopped")


async def serve_health(
    health: Health, metrics: WorkerMetrics | None, settings: Settings
) -> web.AppRunner:
    """/livez, /readyz and /metrics on WORKER_HEALTH_PORT (the worker serves nothing else)."""
    app = web.Application()
    health.add_routes(app)
    if metrics is not None:
        app.router.add_get("/metrics", metrics.handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.worker_health_port).start()
    log.info("health on http://%s:%s/readyz", settings.host, settings.worker_health_port)
    return runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers")
    sub = parser.add_subparsers(dest="mode")
    sub.add_parser("run", help="run the relay and maintenance (the default)")
    sub.add_parser("migrate", help="the same as `python -m server migrate`")
    args = parser.parse_args(argv)
    settings = load_settings()
    if settings is None:
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.mode == "migrate":
        return run_process(migrate_database(settings), settings)
    if not settings.redis_url:
        log.warning("REDIS_URL is unset: this worker's relay reaches no web process")
    return run_process(run(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
