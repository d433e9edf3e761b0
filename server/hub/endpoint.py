"""GET /cable: the WebSocket endpoint. Reads client commands one at a time per socket and
turns them into hub subscriptions; everything it sends goes through the bounded queue."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from server.hub import protocol, room
from server.hub.connection import Connection
from server.hub.hub import Hub, Subscription
from server.ratelimit import SocketLimited, SocketLimits
from server.services import Services, services
from server.store.unavailable import DatabaseUnavailable

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
MAX_PROTOCOL_ERRORS = 20


async def cable(request: web.Request) -> web.WebSocketResponse:
    svc = services(request)
    hub = svc.hub
    assert hub is not None
    ws = web.WebSocketResponse(
        protocols=(protocol.SUBPROTOCOL,), compress=False, max_msg_size=MAX_FRAME, heartbeat=None
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
    if ws.ws_protocol != protocol.SUBPROTOCOL:
        await conn.close(protocol.INVALID_REQUEST)
        return ws
    hub.add_connection(conn)
    conn.send(protocol.WELCOME)
    deadline = asyncio.get_running_loop().call_later(
        svc.settings.cable_subscribe_timeout, _close_if_unsubscribed, hub, conn
    )
    errors = 0
    limits = SocketLimits(svc.settings.rate_limits)
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                await _handle(svc, conn, msg.data, limits)
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
        deadline.cancel()
        await hub.remove_connection(conn)
        if not conn.closed:
            conn.abort()
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
    hub = svc.hub
    assert hub is not None
    if command == "subscribe":
        await _subscribe(svc, conn, identifier, limits)
    elif command == "unsubscribe":
        sub = conn.subscriptions.get(identifier)
        if sub is not None:
            await hub.detach(sub)
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
    svc: Services, conn: Connection, identifier: str, limits: SocketLimits
) -> None:
    hub = svc.hub
    assert hub is not None
    ident_json = protocol.identifier_json(identifier)
    if identifier in conn.subscriptions:
        return  # ActionCable ignores a repeated subscribe
    if len(conn.subscriptions) >= svc.settings.max_subscriptions_per_socket:
        conn.send(protocol.reject(ident_json))
        return
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
    await hub.attach(sub)
    conn.send(protocol.confirm(ident_json))
    limits.spend("presence_per_socket")
    await _presence(svc, sub)


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
