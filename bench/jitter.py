"""The reliability run of `bench/fanout.py jitter`, after AnyCable's benchmark: sockets that
drop at random and come back, while messages are posted, and a count of what every socket
ended up with.

Each visitor has --tabs sockets (a visitor with several tabs open), spread over both web
processes. Every socket is dropped (its TCP connection aborted) at a random moment about every
--drop-every seconds, stays offline about --offline seconds, then connects again, to either web
process, and catches up the way its client does:

- `plain` (Chatwoot's widget, actioncable-v1-json): subscribe again, then
  `GET /api/v1/widget/messages?after=<newest message id it has>`.
- `ext` (--protocol ext: @anycable/core and our cable.js, actioncable-v1-ext-json): connect
  with the session id of its last welcome (`?sid=`); restored, ask for the history after the
  last stream position it got (and since the server's last ping); not restored (after a
  `disconnect` frame), subscribe with that history request. Only on `reject_history` does it
  fetch `after=` over HTTP, as cable.js does.

Reported: messages every socket should have, how many it has (live, from the history or
caught up), how many frames of one message a socket got twice, how many connections got
messages out of order, and the replay time (from the reconnect to `confirm_history`, or to
the catch-up's answer) p50/p99/max; for `ext`, how many reconnects were restored, resumed
from the history, or rejected.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection as Pipe
from typing import Any

WIDGET = "/api/v1/widget"
SEQ_MARK = b'"content":"fb '
ID_MARK = b'"data":{"id":'
CREATED = b'"event":"message.created"'
CONNECT_PARALLEL = 100
EXT = "actioncable-v1-ext-json"
POSITION_MARK = b',"stream_id":'


@dataclass
class Target:
    index: int
    visitor: int
    identifier: str
    auth_token: str


@dataclass
class SocketState:
    target: Target
    got: set[int] = field(default_factory=set)  # sequence numbers, live or caught up
    newest_id: int = 0
    # Per connection: the message ids of live message.created frames (ids follow commit
    # order within a conversation; one visitor's messages can commit out of their posting
    # order when two of its POSTs overlap).
    live_runs: list[list[int]] = field(default_factory=list)
    duplicates: int = 0  # frames of a message this socket already had a frame of
    live_seen: set[int] = field(default_factory=set)
    replays: list[float] = field(default_factory=list)
    drops: int = 0
    catch_up_errors: int = 0
    died: bool = False  # the client's own loop failed: what it missed then is not the server's
    # The extended protocol: the session to come back with, the last position per stream,
    # the server's time at its last ping, and how the reconnects went.
    sid: str | None = None
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    server_time: int = 0
    restored: int = 0
    resumed: int = 0
    rejected: int = 0


def client_frame(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


class JitterSocket(asyncio.Protocol):
    def __init__(self, state: SocketState, host: str, ext: bool = False) -> None:
        self.state = state
        self.host = host
        self.ext = ext
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.confirmed: asyncio.Future[bool] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        # ext: whether what was missed came (confirm_history) or not (reject_history, or
        # nothing to ask by)
        self.history: asyncio.Future[bool] = loop.create_future()
        self.run: list[int] = []
        state.live_runs.append(self.run)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        path = "/cable"
        if self.ext and self.state.sid:
            path += f"?sid={self.state.sid}"
        transport.write(  # type: ignore[attr-defined]
            (
                f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: "
                f"{EXT if self.ext else 'actioncable-v1-json'}\r\n\r\n"
            ).encode()
        )

    def _send(self, frame: dict[str, Any]) -> None:
        self.transport.write(client_frame(json.dumps(frame).encode()))  # type: ignore[union-attr]

    def _history_request(self) -> dict[str, Any] | None:
        state = self.state
        if not state.positions and not state.server_time:
            return None
        return {"since": state.server_time, "streams": state.positions}

    def _control(self, frame: dict[str, Any]) -> None:
        """A frame without an identifier, on the extended protocol."""
        state = self.state
        kind = frame.get("type")
        if kind == "ping":
            state.server_time = frame["message"]
        elif kind == "disconnect":
            state.sid = None  # as @anycable/core: the session ends with a disconnect frame
        elif kind == "welcome":
            state.sid = frame.get("sid")
            identifier = state.target.identifier
            history = self._history_request() if state.live_runs[:-1] else None
            if identifier in (frame.get("restored_ids") or ()):
                state.restored += 1
                self.confirmed.set_result(True)
                if history is None:
                    self._send({"command": "history", "identifier": identifier})
                    self.history.set_result(False)
                else:
                    self._send({"command": "history", "identifier": identifier, "history": history})
                return
            subscribe: dict[str, Any] = {"command": "subscribe", "identifier": identifier}
            if history is not None:
                subscribe["history"] = history
            elif not self.history.done():
                self.history.set_result(False)
            self._send(subscribe)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.confirmed.done():
            self.confirmed.set_result(False)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.transport.close()  # type: ignore[union-attr]
                return
            del buf[: end + 4]
            self.upgraded = True
            if not self.ext:  # ext subscribes (or not) once it has the welcome
                self._send({"command": "subscribe", "identifier": self.state.target.identifier})
        i, n = 0, len(buf)
        while n - i >= 2:
            ln = buf[i + 1] & 0x7F
            hl = 2
            if ln == 126:
                if n - i < 4:
                    break
                ln, hl = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif ln == 127:
                if n - i < 10:
                    break
                ln, hl = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            end = i + hl + ln
            if end > n:
                break
            start = i + hl
            text = buf[i] & 0x0F == 1
            i = end
            # Only text frames starting {"identifier": not a ping, welcome, close frame.
            if not text or ln < 3 or buf[start + 2] != 0x69:
                if self.ext and text and ln >= 3:
                    self._control(json.loads(bytes(buf[start:end])))
                continue
            if not self.confirmed.done() and buf.find(b"confirm_subscription", start, end) >= 0:
                self.confirmed.set_result(True)
                continue
            if self.ext and not self.history.done():
                if buf.find(b'"type":"confirm_history"', start, end) >= 0:
                    self.history.set_result(True)
                    continue
                if buf.find(b'"type":"reject_history"', start, end) >= 0:
                    self.history.set_result(False)
                    continue
            if buf.find(CREATED, start, end) < 0:
                continue
            if self.ext:
                at = buf.rfind(POSITION_MARK, start, end)
                if at >= 0:
                    tail = json.loads(b"{" + bytes(buf[at + 1 : end]))
                    self.state.positions[tail["stream_id"]] = {
                        "epoch": tail["epoch"],
                        "offset": tail["offset"],
                    }
            at = buf.find(SEQ_MARK, start, end)
            if at < 0:
                continue
            at += len(SEQ_MARK)
            seq = int(buf[at : buf.find(b" ", at, end)])
            at = buf.find(ID_MARK, start, end) + len(ID_MARK)
            message_id = int(buf[at : buf.find(b",", at, end)])
            self._received(seq, message_id)
        if i:
            del buf[:i]

    def _received(self, seq: int, message_id: int) -> None:
        state = self.state
        if seq in state.live_seen:
            state.duplicates += 1
        state.live_seen.add(seq)
        state.got.add(seq)
        self.run.append(message_id)
        state.newest_id = max(state.newest_id, message_id)


async def _catch_up(
    session: Any, url: str, state: SocketState, website_token: str, after: int
) -> None:
    """Chatwoot's widget after a reconnect: the messages after the newest it had when its
    socket dropped (not the newest now: one may have arrived live since the reconnect).
    A failed request (an overloaded server's 503, a timeout) is retried, as the widget's
    next reconnect would; each failure is counted."""
    while True:
        try:
            async with session.get(
                f"{url}{WIDGET}/messages",
                params={"website_token": website_token, "after": str(after)},
                headers={"X-Auth-Token": state.target.auth_token},
            ) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"catch-up: {resp.status}")
                page = (await resp.json())["payload"]
        except Exception:
            state.catch_up_errors += 1
            await asyncio.sleep(0.5)
            continue
        for message in page:
            content = message["content"] or ""
            if content.startswith("fb "):
                state.got.add(int(content.split(" ")[1]))
            state.newest_id = max(state.newest_id, message["id"])
            after = max(after, message["id"])
        if len(page) < 100:
            return


async def _jitter(
    pipe: Pipe, targets: list[Target], ports: list[int], opts: dict[str, Any]
) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    states = [SocketState(t) for t in targets]
    rng = random.Random(opts["seed"])
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    stopping = asyncio.Event()
    failures: Counter[str] = Counter()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=30)
    )

    ext = opts["protocol"] == "ext"

    async def connect(state: SocketState) -> JitterSocket | None:
        port = rng.choice(ports)
        async with gate:
            try:
                _, proto = await loop.create_connection(
                    lambda: JitterSocket(state, f"127.0.0.1:{port}", ext), "127.0.0.1", port
                )
            except OSError as exc:
                failures[type(exc).__name__] += 1
                return None
            try:
                ok = await asyncio.wait_for(proto.confirmed, 30)
            except TimeoutError:
                ok = False
            if not ok:
                failures[bytes(proto.buf[:80]).decode(errors="replace") or "closed"] += 1
        if not ok:
            if proto.transport is not None:
                proto.transport.abort()
            return None
        proto.port = port  # type: ignore[attr-defined]
        return proto

    async def hold(state: SocketState, first: JitterSocket) -> None:
        proto: JitterSocket | None = first
        while True:
            assert proto is not None
            drop_after = rng.uniform(0.5, 1.5) * opts["drop_every"]
            try:
                async with asyncio.timeout(drop_after):
                    await asyncio.wait(
                        {asyncio.ensure_future(stopping.wait()), proto.lost},
                        return_when=asyncio.FIRST_COMPLETED,
                    )
            except TimeoutError:
                pass
            if stopping.is_set():
                return
            state.drops += 1
            if proto.transport is not None:
                proto.transport.abort()
            had = state.newest_id
            await asyncio.sleep(rng.uniform(0.5, 1.5) * opts["offline"])
            started = time.monotonic()
            proto = None
            while proto is None:
                proto = await connect(state)
                if proto is None:
                    await asyncio.sleep(0.2)
            url = f"http://127.0.0.1:{proto.port}"  # type: ignore[attr-defined]
            if ext:
                try:
                    resumed = await asyncio.wait_for(asyncio.shield(proto.history), 30)
                except TimeoutError:
                    resumed = False
                state.resumed += resumed
                state.rejected += not resumed
                if not resumed:
                    await _catch_up(session, url, state, opts["website_token"], had)
            else:
                await _catch_up(session, url, state, opts["website_token"], had)
            state.replays.append(time.monotonic() - started)

    firsts = await asyncio.gather(*(connect(s) for s in states))
    failed = sum(1 for p in firsts if p is None)
    pipe.send(("ready", len(states) - failed, failed, dict(failures)))
    if pipe.recv() != "go":
        return

    async def held(state: SocketState, first: JitterSocket) -> None:
        try:
            await hold(state, first)
        except Exception:
            state.died = True

    tasks = [loop.create_task(held(s, p)) for s, p in zip(states, firsts, strict=True) if p]
    await loop.run_in_executor(None, pipe.recv)  # "stop": the loader is done
    stopping.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Every socket is connected again and caught up: now what is still in flight arrives.
    await asyncio.sleep(opts["drain"])
    pipe.send(
        [
            (
                s.target.visitor,
                sorted(s.got),
                s.duplicates,
                s.live_runs,
                s.replays,
                s.drops,
                (s.restored, s.resumed, s.rejected, s.catch_up_errors, s.died),
            )
            for s, first in zip(states, firsts, strict=True)
            if first is not None  # a socket that never connected is not measured
        ]
    )
    await session.close()


def jitter_process(
    pipe: Pipe, targets: list[Target], ports: list[int], opts: dict[str, Any]
) -> None:
    import uvloop

    uvloop.run(_jitter(pipe, targets, ports, opts))


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def run(
    stack: Any,
    args: Any,
    make_world: Any,
    visitor_identifier: Any,
    run_loader: Any,
    cpu_meter: Any,
) -> dict[str, Any]:
    visitors = max(1, args.sockets // args.tabs)
    world = make_world(stack, agents=1, visitors=visitors, open_conversations=True)
    ports = [stack.ports["server1"], stack.ports["server2"]]
    targets = [
        Target(v * args.tabs + t, v, visitor_identifier(world.visitors[v][1]), world.visitors[v][0])
        for v in range(visitors)
        for t in range(args.tabs)
    ]
    opts = {
        "drop_every": args.drop_every,
        "offline": args.offline,
        "drain": args.drain,
        "website_token": world.website_token,
        "protocol": args.protocol,
    }
    ctx = get_context("spawn")
    procs = []
    for k in range(args.reader_procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=jitter_process,
            args=(child, targets[k :: args.reader_procs], ports, {**opts, "seed": k}),
            daemon=True,
        )
        proc.start()
        procs.append((proc, parent))
    try:
        ok = failed = 0
        for _, pipe in procs:
            if not pipe.poll(300):
                raise SystemExit("jitter sockets did not connect in time")
            _, o, f, why = pipe.recv()
            ok, failed = ok + o, failed + f
            if why:
                print(f"failed to connect: {why}", file=sys.stderr)
        print(f"{ok} sockets subscribed ({failed} failed)", file=sys.stderr)
        for _, pipe in procs:
            pipe.send("go")
        tokens = [t for t, _ in world.visitors]
        loader, lpipe = run_loader(ports, world, tokens, args.rate, args.seconds, args.connections)
        cpu = cpu_meter(stack)
        if not lpipe.poll(args.seconds + 120):
            raise SystemExit("loader did not finish")
        cpu_pct = cpu.percent()
        load = lpipe.recv()
        loader.join(timeout=10)
        for _, pipe in procs:
            pipe.send("stop")
        results = []
        for _, pipe in procs:
            if not pipe.poll(120 + args.drain):
                raise SystemExit("jitter sockets did not finish")
            results.extend(pipe.recv())
    finally:
        for proc, _ in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    posted = [k for k, code in enumerate(load["codes"]) if code == "200"]
    by_visitor: dict[int, set[int]] = {}
    for k in posted:
        by_visitor.setdefault(k % visitors, set()).add(k)
    expected = delivered = duplicates = out_of_order = drops = 0
    replays: list[float] = []
    restored = resumed = rejected = catch_up_errors = died = 0
    for visitor, got, dups, runs, socket_replays, socket_drops, ext_counts in results:
        restored += ext_counts[0]
        resumed += ext_counts[1]
        rejected += ext_counts[2]
        catch_up_errors += ext_counts[3]
        died += ext_counts[4]
        want = by_visitor.get(visitor, set())
        expected += len(want)
        delivered += len(want & set(got))
        duplicates += dups
        out_of_order += sum(1 for run in runs if run != sorted(run))
        replays.extend(socket_replays)
        drops += socket_drops
    return {
        "mode": "jitter",
        "protocol": args.protocol,
        "sockets": ok,
        "failed_sockets": failed,
        "visitors": visitors,
        "tabs": args.tabs,
        "rate_target": args.rate,
        "messages_posted": len(posted),
        "post_statuses": load["statuses"],
        "drops": drops,
        "messages_expected": expected,
        "messages_delivered": delivered,
        "delivered_percent": round(100 * delivered / max(expected, 1), 3),
        "live_duplicates": duplicates,
        "connections_out_of_order": out_of_order,
        "catch_up_requests_failed": catch_up_errors,
        "client_loops_failed": died,
        **(
            {"sessions_restored": restored, "resumed": resumed, "history_rejected": rejected}
            if args.protocol == "ext"
            else {}
        ),
        "cpu_percent": cpu_pct,
        "replay_ms": {
            p: round(pct(replays, q) * 1000, 1) for p, q in (("p50", 50), ("p99", 99), ("max", 100))
        },
    }
