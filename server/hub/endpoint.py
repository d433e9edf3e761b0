"""GET /cable: the WebSocket endpoint. Reads client commands one at a time per socket and
turns them into hub subscriptions; everything it sends goes through the bounded queue.

Two subprotocols, picked in the client's order of preference: `actioncable-v1-json` (plain
ActionCable, Chatwoot's widget; its frames stay exactly as they were) and AnyCable's
`actioncable-v1-ext-json`, for clients that resume: a session id in the welcome, the session
restored on reconnect (`?sid=` or `X-ANYCABLE-RESTORE-SID`), stream positions on durable
events, `history` (and subscribe with `history`) answered `confirm_history` or
`reject_history`, and `pong` (accepted; the server does not require it)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from server.hub import protocol, room
from server.hub.connection import Connection
from server.hub.hub import Hub, Subscription
from server.hub.protocol import HistoryRequest
from server.hub.sessions import SessionStoreUnavailable, new_sid, valid_sid
from server.ratelimit import SocketLimited, SocketLimits
from server.services import Services, services
from server.store.unavailable import DatabaseUnavailable

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
MAX_PROTOCOL_ERRORS = 20
RESTORE_HEADER = "X-ANYCABLE-RESTORE-SID"
# A session store that fails is logged at most this often (one line per outage, not per
# socket).
STORE_LOG_EVERY = 10.0
_store_logged = 0.0


async def cable(request: web.Request) -> web.WebSocketResponse:
    svc = services(request)
    hub = svc.hub
    assert hub is not None
    ws = web.WebSocketResponse(
        protocols=(protocol.SUBPROTOCOL, protocol.EXT_SUBPROTOCOL),
        compress=False,
        max_msg_size=MAX_FRAME,
        heartbeat=None,
    )
    writer = await ws.prepare(request)
    conn = Connection(
        ws,
        request.transport,
        limit=svc.settings.send_queue_size,
        byte_limit=svc.settings.send_queue_bytes,
        on_overflow=hub.on_overflow,
        flush=writer.drain,
        peer=request.remote or "",
    )
    if ws.ws_protocol not in (protocol.SUBPROTOCOL, protocol.EXT_SUBPROTOCOL):
        await conn.close(protocol.INVALID_REQUEST)
        return ws
    conn.ext = ws.ws_protocol == protocol.EXT_SUBPROTOCOL
    hub.add_connection(conn)
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    errors = 0
    limits = SocketLimits(svc.settings.rate_limits)
    handle = _handle_ext if conn.ext else _handle
    try:
        try:
            if conn.ext:
                await _welcome_ext(svc, conn, request, limits)
                timers.append(
                    loop.call_later(
                        svc.settings.cable_subscribe_timeout, _release_restoring, hub, conn
                    )
                )
            else:
                conn.send(protocol.WELCOME)
        except DatabaseUnavailable:
            await conn.close(protocol.SERVER_RESTART)
        timers.append(
            loop.call_later(svc.settings.cable_subscribe_timeout, _close_if_unsubscribed, hub, conn)
        )
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY) or conn.closed:
                break
            try:
                await handle(svc, conn, msg.data, limits)
            except SocketLimited as exc:
                svc.limiter.refused[exc.name] += 1
                log.warning("closing /cable socket from %s: %s", conn.peer, exc)
                await conn.close(protocol.rate_limited(exc.name))
                break
            except DatabaseUnavailable:
                # Counted and logged once per outage by the Database. The client reconnects
                # (with backoff) and catches up, as after a restart.
                await conn.close(protocol.SERVER_RESTART)
                break
            except protocol.ProtocolError as exc:
                errors += 1
                log.debug("bad frame from %s: %s", conn.peer, exc)
                if errors >= MAX_PROTOCOL_ERRORS:
                    await conn.close(protocol.INVALID_REQUEST)
                    break
    finally:
        for timer in timers:
            timer.cancel()
        identifiers = list(conn.subscriptions)
        await hub.remove_connection(conn)
        if not conn.closed:
            conn.abort()
        if identifiers:
            # Kept SESSION_TTL from now, if not restored elsewhere already: that is how long a
            # reconnect may restore it.
            await _save_session(svc, conn, identifiers, refresh=True)
    return ws


def _close_if_unsubscribed(hub: Hub, conn: Connection) -> None:
    """CABLE_SUBSCRIBE_TIMEOUT after the welcome: a socket with no confirmed subscription
    holds a descriptor for nothing (the widget subscribes right after the welcome)."""
    if conn.subscriptions or conn.closed:
        return
    hub.unsubscribed_closed += 1
    log.debug("closing /cable socket from %s: no subscription confirmed in time", conn.peer)
    task = asyncio.get_running_loop().create_task(conn.close(protocol.NO_SUBSCRIPTION))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()  # strong references until each close is done


async def _handle(svc: Services, conn: Connection, raw: str | bytes, limits: SocketLimits) -> None:
    command, identifier, data = protocol.parse_command(raw)
    await _command(svc, conn, command, identifier, data, limits)


async def _handle_ext(
    svc: Services, conn: Connection, raw: str | bytes, limits: SocketLimits
) -> None:
    cmd = protocol.parse_ext_command(raw)
    if cmd.command == "pong":
        return  # @anycable/core's answer to a ping (option `pongs`): nothing to do
    if cmd.command == "history":
        sub = conn.subscriptions.get(cmd.identifier)
        if sub is None:
            raise protocol.ProtocolError("history for an identifier that is not subscribed")
        assert cmd.history is not None
        await _history(svc, sub, cmd.history, limits)
        return
    await _command(svc, conn, cmd.command, cmd.identifier, cmd.data, limits, cmd.history)


async def _command(
    svc: Services,
    conn: Connection,
    command: str,
    identifier: str,
    data: dict[str, object] | None,
    limits: SocketLimits,
    history: HistoryRequest | None = None,
) -> None:
    hub = svc.hub
    assert hub is not None
    if command == "subscribe":
        await _subscribe(svc, conn, identifier, limits, history)
    elif command == "unsubscribe":
        sub = conn.subscriptions.get(identifier)
        if sub is not None:
            await hub.detach(sub)
            if conn.ext:
                await _save_session(svc, conn)
    else:
        sub = conn.subscriptions.get(identifier)
        if sub is None:
            raise protocol.ProtocolError("message for an identifier that is not subscribed")
        action = (data or {}).get("action")
        if action == "update_presence":
            limits.spend("presence_per_socket")
            await _presence(svc, sub)
        else:
            raise protocol.ProtocolError(f"unknown action {action!r}")


async def _subscribe(
    svc: Services,
    conn: Connection,
    identifier: str,
    limits: SocketLimits,
    history: HistoryRequest | None = None,
) -> None:
    hub = svc.hub
    assert hub is not None
    ident_json = protocol.identifier_json(identifier)
    if identifier in conn.subscriptions:
        return  # ActionCable ignores a repeated subscribe
    if len(conn.subscriptions) >= svc.settings.max_subscriptions_per_socket:
        conn.send(protocol.reject(ident_json))
        return
    wants_history = history is not None and not history.empty
    if wants_history:
        limits.spend("history_per_socket")
    try:
        sub = await svc.db.read(room.resolve, conn, identifier)
    except room.Rejected as exc:
        # Logged once per socket: a flood of unknown tokens is one line, then the close.
        first = not limits.used("failed_subscribes_per_socket")
        (log.info if first else log.debug)("rejected subscription from %s: %s", conn.peer, exc)
        conn.send(protocol.reject(ident_json))
        limits.spend("failed_subscribes_per_socket")
        return
    if conn.closed:
        return
    # With history, its live events wait until the history is sent (in order, once).
    await hub.attach(sub, hold=wants_history)
    conn.send(protocol.confirm(ident_json))
    if conn.ext:
        await _save_session(svc, conn)
    try:
        limits.spend("presence_per_socket")
        await _presence(svc, sub)
    finally:
        if wants_history:
            assert history is not None
            await _answer_history(svc, sub, history)


async def _history(
    svc: Services, sub: Subscription, request: HistoryRequest, limits: SocketLimits
) -> None:
    """The `history` command (after a restore, @anycable/core sends one per subscription)."""
    hub = svc.hub
    assert hub is not None
    if request.empty:
        # Nothing asked (a client without positions or a time): nothing to send but what
        # was held.
        if sub.held is not None:
            hub.release(sub)
        sub.conn.send(protocol.confirm_history(protocol.identifier_json(sub.identifier)))
        return
    try:
        limits.spend("history_per_socket")
    except SocketLimited:
        if sub.held is not None:
            hub.release(sub)
        raise
    await _answer_history(svc, sub, request)


async def _answer_history(svc: Services, sub: Subscription, request: HistoryRequest) -> None:
    hub = svc.hub
    assert hub is not None
    ok = await hub.serve_history(sub, request)
    ident_json = protocol.identifier_json(sub.identifier)
    sub.conn.send(
        protocol.confirm_history(ident_json) if ok else protocol.reject_history(ident_json)
    )


async def _welcome_ext(
    svc: Services, conn: Connection, request: web.Request, limits: SocketLimits
) -> None:
    """The extended welcome: a new session id and, when the client came back with one we
    keep, that session's subscriptions restored (re-resolved: a revoked token stays out),
    their live events held until the client asks for its history."""
    hub = svc.hub
    assert hub is not None
    sessions = svc.sessions
    restored: list[Subscription] = []
    if sessions is not None:
        conn.sid = new_sid()
        old = valid_sid(request.headers.get(RESTORE_HEADER) or request.query.get("sid"))
        identifiers = None
        if old is not None:
            try:
                identifiers = await sessions.take(old)
            except SessionStoreUnavailable as exc:
                _store_failed("restoring a session", exc)
        for identifier in (identifiers or [])[: svc.settings.max_subscriptions_per_socket]:
            if identifier in conn.subscriptions:
                continue
            try:
                sub = await svc.db.read(room.resolve, conn, identifier)
            except room.Rejected as exc:
                log.info("not restoring a subscription for %s: %s", conn.peer, exc)
                continue
            await hub.attach(sub, hold=True)
            sub.restoring = True
            restored.append(sub)
    conn.send(protocol.welcome_ext(conn.sid, [sub.identifier for sub in restored]))
    if not restored:
        return
    hub.sessions_restored += 1
    hub.subscriptions_restored += len(restored)
    await _save_session(svc, conn)
    for sub in restored:
        try:
            limits.spend("presence_per_socket")
        except SocketLimited:
            break  # the presence answers wait for the client's update_presence
        await _presence(svc, sub)


def _release_restoring(hub: Hub, conn: Connection) -> None:
    """CABLE_SUBSCRIBE_TIMEOUT after the welcome: restored subscriptions whose client never
    asked for its history get their held live events and go live."""
    for sub in list(conn.subscriptions.values()):
        if sub.restoring:
            hub.release(sub)


async def _save_session(
    svc: Services,
    conn: Connection,
    identifiers: list[str] | None = None,
    *,
    refresh: bool = False,
) -> None:
    """The socket's subscriptions (or `identifiers`) as its session."""
    if svc.sessions is None or conn.sid is None:
        return
    if identifiers is None:
        identifiers = list(conn.subscriptions)
    try:
        await svc.sessions.save(conn.sid, identifiers, refresh=refresh)
    except SessionStoreUnavailable as exc:
        _store_failed("saving a session", exc)


def _store_failed(what: str, exc: Exception) -> None:
    """A session store that fails costs the client its restore, not its socket: it
    resubscribes with its positions and resumes from the history all the same."""
    global _store_logged
    now = asyncio.get_running_loop().time()
    if now - _store_logged >= STORE_LOG_EVERY:
        _store_logged = now
        log.warning(
            "session store failed %s (%s): reconnecting clients resubscribe instead of "
            "restoring; check Redis",
            what,
            exc,
        )


async def _presence(svc: Services, sub: Subscription) -> None:
    """Refresh the subscriber's presence and answer with presence.update, to it alone."""
    presence = svc.presence
    if sub.is_agent:
        await presence.touch(sub.account_id, "user", sub.user_id)  # type: ignore[arg-type]
        contacts = await presence.online(sub.account_id, "contact")
    else:
        await presence.touch(sub.account_id, "contact", sub.contact_id)  # type: ignore[arg-type]
        contacts = set()
    users = await presence.online(sub.account_id, "user")
    message = await svc.db.read(room.presence_message, sub, users, contacts)
    assert svc.hub is not None
    svc.hub.send_to(sub, message)
