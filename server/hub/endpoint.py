"""GET /cable: the WebSocket endpoint. Reads client commands one at a time per socket and
turns them into hub subscriptions; everything it sends goes through the bounded queue."""

from __future__ import annotations

import logging

from aiohttp import WSMsgType, web

from server.hub import protocol, room
from server.hub.connection import Connection
from server.hub.hub import Subscription
from server.services import Services, services

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
    errors = 0
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                await _handle(svc, conn, msg.data)
            except protocol.ProtocolError as exc:
                errors += 1
                log.debug("bad frame from %s: %s", conn.peer, exc)
                if errors >= MAX_PROTOCOL_ERRORS:
                    await conn.close(protocol.INVALID_REQUEST)
                    break
    finally:
        await hub.remove_connection(conn)
        if not conn.closed:
            conn.abort()
    return ws


async def _handle(svc: Services, conn: Connection, raw: str | bytes) -> None:
    command, identifier, data = protocol.parse_command(raw)
    hub = svc.hub
    assert hub is not None
    if command == "subscribe":
        await _subscribe(svc, conn, identifier)
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
            await _presence(svc, sub)
        else:
            raise protocol.ProtocolError(f"unknown action {action!r}")


async def _subscribe(svc: Services, conn: Connection, identifier: str) -> None:
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
        log.info("rejected subscription from %s: %s", conn.peer, exc)
        conn.send(protocol.reject(ident_json))
        return
    if conn.closed:
        return
    await hub.attach(sub)
    conn.send(protocol.confirm(ident_json))
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
