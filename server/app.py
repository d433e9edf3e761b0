"""create_app(settings): the routes, and what starts and stops with the web process."""

from __future__ import annotations

import logging

from aiohttp import web

from server import images, openapi, pages, security_headers
from server.agent import routes as agent_routes
from server.bus import create_bus
from server.connections import AddressCounts, forwarded_cap
from server.errors import error_middleware
from server.health import Health, standard_checks
from server.hub.endpoint import cable
from server.hub.hub import Hub
from server.hub.sessions import create_sessions
from server.logs import add_request_id_header, request_middleware
from server.mail.mailer import Mailer, parse_smtp_url
from server.metrics import Metrics
from server.presence import MemoryPresence, RedisPresence
from server.ratelimit import create_limiter
from server.services import SERVICES, InboxCache, Services
from server.settings import Settings
from server.storage import create_storage
from server.storage.directory import ROUTE as ATTACHMENT_ROUTE
from server.storage.directory import DirectoryStorage
from server.store.db import Database
from server.store.writes import Store
from server.uploads import Attachments
from server.voice import call_handlers as voice_calls
from server.voice import handlers as voice
from server.voice import webhook as voice_webhook
from server.voice.calls import VoiceCalls
from server.voice.elevenlabs import ElevenLabs
from server.widget import activity, config, contact, transcript
from server.widget import conversations as widget_conversations
from server.widget import labels as widget_labels
from server.widget import messages as widget_messages

log = logging.getLogger(__name__)

WIDGET = "/api/v1/widget"


def widget_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/widget", config.page)
    r.add_post(f"{WIDGET}/config", config.config)
    r.add_get(f"{WIDGET}/inbox_members", config.inbox_members)
    conv = f"{WIDGET}/conversations"
    r.add_get(conv, widget_conversations.index)
    r.add_post(conv, widget_conversations.create)
    r.add_post(f"{conv}/set_custom_attributes", widget_conversations.set_custom_attributes)
    r.add_post(f"{conv}/destroy_custom_attributes", widget_conversations.destroy_custom_attributes)
    r.add_post(f"{conv}/toggle_typing", widget_conversations.toggle_typing)
    r.add_post(f"{conv}/update_last_seen", widget_conversations.update_last_seen)
    r.add_get(f"{conv}/toggle_status", widget_conversations.toggle_status)
    r.add_get(f"{conv}/voice_signed_url", voice.signed_url)
    r.add_post(f"{conv}/voice_transcript", voice.transcript)
    r.add_post(f"{conv}/transcript", transcript.transcript)
    r.add_get(f"{conv}/voice_call_active", voice_calls.call_active)
    r.add_post(f"{conv}/voice_heartbeat", voice_calls.heartbeat)
    r.add_post(f"{conv}/voice_call_ended", voice_calls.call_ended)
    r.add_post(f"{conv}/voice_link_elevenlabs", voice_calls.link)
    r.add_get(f"{conv}/voice_history", voice_calls.history)
    r.add_get(f"{conv}/voice_transcript_poll", voice_calls.transcript_poll)
    r.add_get(f"{conv}/inbox_config", voice_calls.inbox_config)
    r.add_post("/webhooks/elevenlabs", voice_webhook.elevenlabs)
    r.add_get(f"{WIDGET}/messages", widget_messages.index)
    r.add_post(f"{WIDGET}/messages", widget_messages.create)
    r.add_patch(f"{WIDGET}/messages/{{id}}", widget_messages.update)
    r.add_post(f"{WIDGET}/labels", widget_labels.create)
    r.add_delete(f"{WIDGET}/labels/{{label}}", widget_labels.destroy)
    r.add_get(f"{WIDGET}/contact", contact.show)
    r.add_patch(f"{WIDGET}/contact", contact.update)
    r.add_patch(f"{WIDGET}/contact/set_user", contact.set_user)
    r.add_post(f"{WIDGET}/contact/destroy_custom_attributes", contact.destroy_custom_attributes)
    r.add_post(f"{WIDGET}/events", activity.create_event)
    r.add_get(f"{WIDGET}/campaigns", activity.campaigns)


def create_app(settings: Settings) -> web.Application:
    counts = AddressCounts(settings.max_connections_per_address)
    middlewares = [error_middleware]
    if settings.trusted_proxies:
        middlewares.append(forwarded_cap(counts, settings.trusted_proxies))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=settings.max_body_bytes,
        handler_args={
            # aiohttp's own idle timer: after a response, the next request head must arrive
            # within this (aiohttp 3.14 defaults to 3630 s: an idle connection held an hour).
            "keepalive_timeout": settings.keepalive_timeout,
            # Draining a body nobody read is reading a body: no longer than BODY_TIMEOUT.
            "lingering_time": min(10.0, settings.body_timeout),
            # Bodies are decoded in server/content_encoding.py, where a bad one is a JSON 400.
            "auto_decompress": False,
        },
    )
    db = Database(
        settings.database_url,
        pg_writers=settings.db_writers,
        timeout=settings.db_timeout,
        auto_migrate=settings.auto_migrate,
        timed=settings.metrics_enabled,
    )
    bus = create_bus(
        settings.redis_url,
        timeout=settings.redis_timeout,
        health_interval=settings.redis_health_interval,
        history_limit=settings.history_limit,
        history_ttl=settings.history_ttl,
        history_bytes=settings.history_bytes,
    )
    presence = RedisPresence(bus.redis) if settings.redis_url else MemoryPresence()  # type: ignore[attr-defined]
    store = Store(db)
    svc = Services(
        settings=settings, db=db, bus=bus, inboxes=InboxCache(db), store=store, presence=presence
    )
    svc.connections = counts
    redis = bus.redis if settings.redis_url else None  # type: ignore[attr-defined]
    svc.limiter = create_limiter(settings.rate_limits, redis)
    svc.hub = Hub(bus, ping_interval=settings.ping_interval)
    svc.sessions = create_sessions(settings.session_ttl, redis)
    store.wake_relay_after_commits(bus.wake_relay)
    storage = create_storage(settings)
    svc.attachments = Attachments(settings, storage)
    svc.mailer = _mailer(settings, db)
    app[SERVICES] = svc
    app[voice.VOICE_AGENT] = ElevenLabs(settings.elevenlabs_base_url, settings.elevenlabs_timeout)
    svc.voice = VoiceCalls(
        db,
        store,
        app[voice.VOICE_AGENT],  # type: ignore[arg-type]
        settings.max_message_length,
        retry_after=settings.voice_reconcile_retry,
        attempts=settings.voice_reconcile_attempts,
    )
    widget_routes(app)
    agent_routes.add_routes(app)
    pages.add_routes(app)
    images.add_routes(app)
    openapi.add_routes(app)
    app.router.add_get("/cable", cable)
    checks = standard_checks(db, bus)
    if isinstance(storage, DirectoryStorage):
        app.router.add_get(ATTACHMENT_ROUTE, storage.serve)
    else:  # a service of its own, which can be down
        checks["storage"] = storage.check
    svc.health = Health(checks, timeout=settings.health_timeout)
    svc.health.add_routes(app)
    metrics = Metrics(svc, settings.metrics_token) if settings.metrics_enabled else None
    # Outside the error middleware: it sees the final status.
    app.middlewares.insert(
        0,
        request_middleware(
            settings.trusted_proxies,
            settings.access_log,
            observe=metrics.observe if metrics is not None else None,
        ),
    )
    app.on_response_prepare.append(add_request_id_header)
    if metrics is not None:
        app.router.add_get("/metrics", metrics.handler)
    app.on_response_prepare.append(security_headers.add_headers)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_close_sockets)
    return app


def _mailer(settings: Settings, db: Database) -> Mailer | None:
    if not settings.smtp_url or not settings.mail_from:
        return None
    return Mailer(
        db,
        parse_smtp_url(settings.smtp_url),
        mail_from=settings.mail_from,
        starttls={"auto": None, "on": True, "off": False}[settings.smtp_starttls],
        timeout=settings.smtp_timeout,
        queue_size=settings.mail_queue_size,
        retry_after=settings.smtp_retry_after,
        attempts=settings.smtp_attempts,
    )


async def _close_sockets(app: web.Application) -> None:
    svc = app[SERVICES]
    if svc.hub is not None:
        await svc.hub.shutdown(grace=min(svc.settings.shutdown_grace, 2.0))


async def _lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
    svc = app[SERVICES]
    await svc.db.start()
    if svc.settings.seed_demo:
        from server.admin import seed_demo

        await seed_demo(svc.db)
    await svc.attachments.start()
    await svc.bus.start()
    assert svc.hub is not None
    svc.hub.start()
    if svc.mailer is not None:
        svc.mailer.start()
    else:
        log.info("SMTP_URL is not set: transcript requests are answered and no mail is sent")
    relay = maintenance = sweeper = None
    if svc.settings.run_relay:
        from workers.maintenance import Maintenance
        from workers.relay import Relay, lease_for
        from workers.voice_sweeper import VoiceSweeper

        relay = Relay(
            svc.db,
            svc.bus,
            lease_for(svc.bus, svc.settings.relay_lease_ttl),
            poll_interval=svc.settings.relay_poll_interval,
            lease_ttl=svc.settings.relay_lease_ttl,
            stall_timeout=svc.settings.relay_stall_timeout,
        )
        relay.start()
        maintenance = Maintenance(
            svc.db, retention=svc.settings.outbox_retention, lease=relay.lease
        )
        maintenance.start()
        sweeper = VoiceSweeper(
            svc.voice, timeout=svc.settings.voice_heartbeat_timeout, lease=relay.lease
        )
        sweeper.start()
    try:
        yield
    finally:
        if svc.mailer is not None:
            await svc.mailer.stop(grace=min(svc.settings.shutdown_grace, 5.0))
        if sweeper is not None:
            await sweeper.stop()
        if maintenance is not None:
            await maintenance.stop()
        if relay is not None:
            await relay.stop()
        await svc.voice.close()
        await app[voice.VOICE_AGENT].close()
        await svc.attachments.close()
        await svc.bus.close()
        await svc.db.close()
