"""GET /metrics: the web process in Prometheus text format (prometheus-client).

The hot path never calls into a metrics library: what it counts stays a plain integer
attribute of the object that counts it (`Hub.frames_sent`, `Limiter.refused`, ...), and a
collector reads those at scrape time. Database calls are timed by the Database itself, into
plain bucket counts per kind of call (`CallTimes`: read, write), read the same way. HTTP
requests are observed once each, by the request middleware of server/logs.py (which also
writes the access line), labelled by route template (bounded: unmatched paths share one
label), method and status. METRICS_ENABLED=0 turns off the HTTP and database timing and the
/metrics endpoint.

Who may scrape: with `METRICS_TOKEN` set, a request bearing `Authorization: Bearer <token>`;
without it, only clients on the loopback interface that came straight to us, not through a
proxy (a sidecar or a node agent). Anyone else gets the same 404 as an unknown path: the
numbers say how busy a deploy is.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from server.errors import not_found
from server.store import outbox
from server.store.db import CallTimes

log = logging.getLogger(__name__)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def allowed(request: web.Request, token: str | None) -> bool:
    """The bearer of METRICS_TOKEN when one is set; else a loopback client that came
    straight to us: a request a proxy forwarded (X-Forwarded-For, Forwarded) comes from the
    proxy's loopback address but on behalf of anyone."""
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def db_call_durations(times: dict[str, CallTimes]) -> HistogramMetricFamily:
    """chat_db_call_duration_seconds{kind}: a Database's CallTimes, per kind of call."""
    family = HistogramMetricFamily(
        "chat_db_call_duration_seconds",
        "Database calls by kind (read: a read transaction; write: a write, its wait for a "
        "writer included), and how long they took (failed and timed-out calls too).",
        labels=["kind"],
    )
    for kind, t in times.items():
        cumulative, buckets = 0, []
        for le, count in zip((*t.bounds, float("inf")), t.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(le), cumulative))
        family.add_metric([kind], buckets, sum_value=t.sum)
    return family


class DatabaseCollector(Collector):
    """The call latency of one Database, read when scraped."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def collect(self) -> Iterator[Any]:
        if self.db.call_times is not None:
            yield db_call_durations(self.db.call_times)


class VoiceCollector(Collector):
    """Voice calls (server/voice/calls.py): started, ended by reason (widget, heartbeat_lost,
    replaced, elevenlabs_ended), turns added from ElevenLabs' transcripts, failed fetches."""

    def __init__(self, voice: Any) -> None:
        self.voice = voice

    def collect(self) -> Iterator[Any]:
        voice = self.voice
        yield CounterMetricFamily(
            "chat_voice_calls_started", "Voice calls started.", value=voice.started
        )
        ended = CounterMetricFamily(
            "chat_voice_calls_ended", "Voice calls ended, by reason.", labels=["reason"]
        )
        for reason in ("widget", "heartbeat_lost", "replaced", "elevenlabs_ended"):
            ended.add_metric([reason], voice.ended[reason])
        yield ended
        yield CounterMetricFamily(
            "chat_voice_turns_reconciled",
            "Voice turns written from ElevenLabs' transcript (the browser never posted them).",
            value=voice.turns_reconciled,
        )
        yield CounterMetricFamily(
            "chat_voice_reconcile_failures",
            "Fetches of a call's ElevenLabs transcript that failed.",
            value=voice.reconcile_failures,
        )
        yield CounterMetricFamily(
            "chat_voice_reconcile_retries",
            "Fetches of an ended call's transcript tried again (ElevenLabs failed, or was"
            " still processing the call).",
            value=voice.reconcile_retries,
        )


class ServiceCollector(Collector):
    """Reads the counters of a web process's services when scraped."""

    def __init__(self, services: Any) -> None:
        self.svc = services

    def collect(self) -> Iterator[Any]:
        svc = self.svc
        hub = svc.hub
        if hub is not None:
            yield GaugeMetricFamily(
                "chat_sockets_open", "Open /cable sockets.", value=len(hub.connections)
            )
            yield GaugeMetricFamily(
                "chat_subscriptions",
                "RoomChannel subscriptions on open sockets.",
                value=sum(len(c.subscriptions) for c in hub.connections),
            )
            yield GaugeMetricFamily(
                "chat_bus_channels", "Bus channels with a local listener.", value=len(hub.channels)
            )
            yield CounterMetricFamily(
                "chat_frames_sent", "Frames written or queued to sockets.", value=hub.frames_sent
            )
            yield CounterMetricFamily(
                "chat_bus_messages_received",
                "Messages received from the bus.",
                value=hub.bus_messages,
            )
            closed = CounterMetricFamily(
                "chat_sockets_closed", "Sockets closed by the server, by reason.", labels=["reason"]
            )
            closed.add_metric(["slow_consumer"], hub.slow_consumers)
            closed.add_metric(["no_subscription"], hub.unsubscribed_closed)
            closed.add_metric(["resync"], hub.resynced)
            yield closed
            yield CounterMetricFamily(
                "chat_stream_events_caught_up",
                "Durable events delivered from a stream's history after a gap or a bus outage.",
                value=hub.caught_up,
            )
            yield CounterMetricFamily(
                "chat_cable_sessions_restored",
                "Extended-protocol sessions restored on reconnect (actioncable-v1-ext-json).",
                value=hub.sessions_restored,
            )
            yield CounterMetricFamily(
                "chat_cable_subscriptions_restored",
                "Subscriptions that came back with a restored session.",
                value=hub.subscriptions_restored,
            )
            history = CounterMetricFamily(
                "chat_cable_history_requests",
                "Extended-protocol history requests, by answer.",
                labels=["result"],
            )
            history.add_metric(["confirmed"], hub.history_confirmed)
            history.add_metric(["rejected"], hub.history_rejected)
            yield history
            yield GaugeMetricFamily(
                "chat_cable_ext_sockets",
                "Open /cable sockets speaking the extended protocol.",
                value=sum(1 for c in hub.connections if c.ext),
            )
        sessions = svc.sessions
        if sessions is not None:
            yield CounterMetricFamily(
                "chat_cable_session_store_failures",
                "Session store calls that failed (Redis unreachable): no restore for them.",
                value=sessions.failures,
            )
        bus = svc.bus
        yield GaugeMetricFamily(
            "chat_bus_connected",
            "1 when the bus is connected (always 1 in process).",
            value=1 if getattr(bus, "connected", True) else 0,
        )
        yield CounterMetricFamily(
            "chat_bus_reconnects",
            "Times the bus connection was lost and made again.",
            value=getattr(bus, "reconnects", 0),
        )
        yield CounterMetricFamily(
            "chat_bus_dead_connections",
            "Bus connections found dead by the health check (no answer to a PING in time).",
            value=getattr(bus, "dead_connections", 0),
        )
        refused = CounterMetricFamily(
            "chat_rate_limited", "Requests or sockets refused by a rate limit.", labels=["limit"]
        )
        for name, count in svc.limiter.refused.items():
            refused.add_metric([name], count)
        yield refused
        guard = svc.guard
        if guard is not None:
            yield GaugeMetricFamily(
                "chat_connections_open", "Open client TCP connections.", value=guard.open
            )
            conns = CounterMetricFamily(
                "chat_connections_refused",
                "Client connections refused or closed by the connection guard, by reason.",
                labels=["reason"],
            )
            conns.add_metric(["per_address"], guard.refused_per_address)
            conns.add_metric(["descriptors"], guard.refused_descriptors)
            conns.add_metric(["head_timeout"], guard.head_timeouts)
            yield conns
        files = svc.attachments
        if files is not None:
            c = files.storage.counters
            yield CounterMetricFamily(
                "chat_attachment_files_stored",
                "Files (and thumbnails) stored.",
                value=c.files_stored,
            )
            yield CounterMetricFamily(
                "chat_attachment_bytes_stored", "Bytes of files stored.", value=c.bytes_stored
            )
            yield CounterMetricFamily(
                "chat_attachment_storage_failures",
                "Storage calls that failed (put, delete): see the log for which.",
                value=c.failures,
            )
            yield CounterMetricFamily(
                "chat_attachment_uploads_refused",
                "Uploads refused: too large, too many files, a type not allowed, a bad image.",
                value=files.refused,
            )
        mailer = getattr(svc, "mailer", None)
        if mailer is not None:
            mails = CounterMetricFamily(
                "chat_transcript_mails",
                "Transcript mails, by result: sent; failed (SMTP refused or unreachable, see "
                "the log); dropped (the queue was full, or the process stopped first).",
                labels=["result"],
            )
            mails.add_metric(["sent"], mailer.sent)
            mails.add_metric(["failed"], mailer.failed)
            mails.add_metric(["retried"], mailer.retried)
            mails.add_metric(["dropped"], mailer.dropped)
            yield mails
            yield GaugeMetricFamily(
                "chat_transcript_mails_queued",
                "Transcript mails waiting to be sent by this process.",
                value=mailer.queue.qsize(),
            )
        if svc.health is not None:
            yield CounterMetricFamily(
                "chat_readyz_failures", "/readyz answers that were 503.", value=svc.health.failures
            )


class Metrics:
    """The registry of one web process, its HTTP middleware and the /metrics handler."""

    def __init__(self, services: Any, token: str | None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ServiceCollector(services))
        if services.voice is not None:
            self.registry.register(VoiceCollector(services.voice))
        self.registry.register(DatabaseCollector(services.db))
        self.token = token
        self.http = Histogram(
            "chat_http_request_duration_seconds",
            "HTTP requests by route template, method and status, and how long they took.",
            ["route", "method", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        """An answered request (server/logs.py's middleware calls this): one child lookup
        in a dict, one observation."""
        resource = request.match_info.route.resource
        key = (resource.canonical if resource is not None else "unmatched", request.method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.http.labels(key[0], key[1], str(status))
        child.observe(seconds)

    async def handler(self, request: web.Request) -> web.Response:
        if not allowed(request, self.token):
            raise not_found()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class WorkerMetrics:
    """GET /metrics on the worker's health port: what the relay published, whether this
    worker holds the lease, and the outbox backlog (unpublished rows, and the age of the
    oldest: the relay's lag from commit to publish, read from the table at scrape time: the
    rows the relay's recorded position does not cover)."""

    def __init__(
        self, db: Any, relay: Any, token: str | None, timeout: float, voice: Any = None
    ) -> None:
        self.db = db
        self.relay = relay
        self.token = token
        self.timeout = timeout
        self.registry = CollectorRegistry(auto_describe=True)
        self.backlog = Gauge(
            "chat_outbox_backlog", "Outbox rows not yet published.", registry=self.registry
        )
        self.oldest = Gauge(
            "chat_outbox_oldest_unpublished_age_seconds",
            "Seconds since the oldest unpublished outbox row was committed (0: none).",
            registry=self.registry,
        )
        self.registry.register(_RelayCollector(relay))
        if voice is not None:
            self.registry.register(VoiceCollector(voice))
        self.registry.register(DatabaseCollector(db))

    async def _read_backlog(self) -> None:
        async with asyncio.timeout(self.timeout):
            count, oldest = await self.db.read(outbox.backlog)
        self.backlog.set(count)
        self.oldest.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    async def handler(self, request: web.Request) -> web.Response:
        if not allowed(request, self.token):
            raise not_found()
        try:
            await self._read_backlog()
        except Exception:  # the rest is still worth scraping; the gauges keep their last value
            log.warning("outbox backlog not read for /metrics", exc_info=True)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _RelayCollector(Collector):
    def __init__(self, relay: Any) -> None:
        self.relay = relay

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily(
            "chat_relay_events_published",
            "Outbox events this worker's relay published.",
            value=self.relay.published,
        )
        yield CounterMetricFamily(
            "chat_relay_positions_recorded",
            "Times this worker's relay recorded how far it has published (relay_state).",
            value=self.relay.recorded,
        )
        yield GaugeMetricFamily(
            "chat_relay_lease_held",
            "1 while this worker holds the relay lease (it is the one publishing).",
            value=1 if self.relay.lease.held else 0,
        )
