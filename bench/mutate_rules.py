# ruff: noqa: E501  (a table of code snippets)
"""Hand-written mutation run over the rules of server/auth.py, server/widget/context.py,
server/widget/identity.py and server/hub/room.py: apply each mutation alone, run the tests that should hold the rule
(both databases), record which test kills it, restore the file.

    .venv/bin/python bench/mutate_rules.py [--only NAME,NAME] [--old-only]

Prints a markdown table: mutation -> first failing test (or SURVIVED). Not a test itself:
it takes minutes. Each mutation is an exact text replacement, so a mutation whose text no
longer matches the file is reported as STALE rather than silently skipped."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

AUTH = "server/auth.py"
CONTEXT = "server/widget/context.py"
ROOM = "server/hub/room.py"
IDENTITY = "server/widget/identity.py"
HUB = "server/hub/hub.py"

WIDGET_TESTS = [
    "tests/test_widget_rules.py",
    "tests/test_odd_tokens.py",
    "tests/test_bad_input.py",
    "tests/test_widget_config.py",
    "tests/test_widget_contact.py",
    "tests/test_widget_messages.py",
    "tests/test_isolation.py",
]
ROOM_TESTS = [
    "tests/test_room_rules.py",
    "tests/test_cable.py",
    "tests/test_isolation.py",
    "tests/test_realtime_protocol.py",
    "tests/test_realtime_events.py",
]
IDENTITY_TESTS = [
    "tests/test_identity.py",
    "tests/test_widget_contact.py",
    "tests/test_isolation.py",
    "tests/test_rate_limits.py",
]
HUB_TESTS = [
    "tests/test_streams.py",
    "tests/test_realtime_events.py",
]
NEW_TESTS = {
    "tests/test_widget_rules.py",
    "tests/test_odd_tokens.py",
    "tests/test_room_rules.py",
}


@dataclass
class Mutation:
    path: str
    old: str
    new: str
    what: str


M = Mutation
MUTATIONS = [
    # auth.py
    M(AUTH, "len(token) > MAX_TOKEN", "len(token) >= MAX_TOKEN", "token limit: > to >="),
    M(AUTH, "if not token or len(token) > MAX_TOKEN or", "if not token or", "token limit deleted"),
    M(AUTH, " or not token.isascii():", ":", "token isascii check deleted"),
    M(AUTH, "MAX_TOKEN = 4096", "MAX_TOKEN = 4097", "token limit 4096 -> 4097"),
    M(AUTH, 'algorithms=["HS256"]', 'algorithms=["HS256", "HS512"]', "HS512 also accepted"),
    M(
        AUTH,
        'for key in ("exp", "iat", "inbox_id")',
        'for key in ("iat", "inbox_id")',
        "exp type check deleted",
    ),
    M(
        AUTH,
        'for key in ("exp", "iat", "inbox_id")',
        'for key in ("exp", "inbox_id")',
        "iat type check deleted",
    ),
    M(
        AUTH,
        'for key in ("exp", "iat", "inbox_id")',
        'for key in ("exp", "iat")',
        "inbox_id type check deleted",
    ),
    M(
        AUTH,
        "type(value) is int and 0 < value",
        "isinstance(value, int) and 0 < value",
        "_int64 accepts bools",
    ),
    M(AUTH, "and 0 < value <= MAX_INT64", "and 0 <= value <= MAX_INT64", "_int64 accepts 0"),
    M(AUTH, "and 0 < value <= MAX_INT64", "and 0 < value", "_int64 upper bound deleted"),
    M(AUTH, "and 0 < value <= MAX_INT64", "and 0 < value < MAX_INT64", "_int64 max: <= to <"),
    M(
        AUTH,
        "not 0 < len(source_id) <= MAX_SOURCE_ID",
        "not 0 < len(source_id) < MAX_SOURCE_ID",
        "source_id 255: <= to <",
    ),
    M(
        AUTH,
        "not 0 < len(source_id) <= MAX_SOURCE_ID",
        "not 0 <= len(source_id) <= MAX_SOURCE_ID",
        "empty source_id accepted",
    ),
    M(
        AUTH,
        "not 0 < len(source_id) <= MAX_SOURCE_ID",
        "not 0 < len(source_id)",
        "source_id length limit deleted",
    ),
    M(
        AUTH,
        "    if not source_id.isprintable():",
        "    if False:",
        "source_id printable check deleted",
    ),
    M(AUTH, "if not isinstance(source_id, str) or not", "if not", "source_id str check deleted"),
    M(
        AUTH,
        '"exp": now + expiry_days * 86400',
        '"exp": now + expiry_days * 3600',
        "minted expiry in hours",
    ),
    M(AUTH, '"iat": now,', '"iat": now - 1,', "minted iat off by one"),
    M(AUTH, "given.lower().encode()", "given.encode()", "hash compare case-sensitive"),
    M(AUTH, "hashlib.sha256", "hashlib.sha1", "identifier hash SHA-1"),
    M(AUTH, "range(length)", "range(length - 1)", "new_token one short"),
    # context.py
    M(CONTEXT, "len(token) > 128", "len(token) > 129", "plausible_token 128 -> 129"),
    M(CONTEXT, "len(token) > 128", "len(token) >= 128", "plausible_token: > to >="),
    M(
        CONTEXT,
        "return token.isascii() and token.isprintable()",
        "return token.isprintable()",
        "plausible_token isascii deleted",
    ),
    M(
        CONTEXT,
        "return token.isascii() and token.isprintable()",
        "return token.isascii()",
        "plausible_token isprintable deleted",
    ),
    M(
        CONTEXT,
        'request.method in ("POST", "PATCH", "PUT", "DELETE")',
        'request.method in ("POST", "PUT", "DELETE")',
        "body token ignored on PATCH",
    ),
    M(
        CONTEXT,
        'request.method in ("POST", "PATCH", "PUT", "DELETE")',
        'request.method in ("PATCH", "PUT", "DELETE")',
        "body token ignored on POST",
    ),
    M(
        CONTEXT,
        'request.method in ("POST", "PATCH", "PUT", "DELETE")',
        'request.method in ("POST", "PATCH")',
        "PUT/DELETE dropped (no widget route uses them)",
    ),
    M(CONTEXT, "and request.can_read_body:", ":", "can_read_body check deleted"),
    M(
        CONTEXT,
        '    value = body.get("website_token")\n    return value if isinstance(value, str) else None',
        "    return None",
        "body website_token ignored",
    ),
    M(
        CONTEXT,
        "return value if isinstance(value, str) else None",
        "return value",
        "body website_token type check deleted",
    ),
    M(
        CONTEXT,
        '    token = request.query.get("website_token")\n    if token:\n        return token\n    value = body.get("website_token")\n    return value if isinstance(value, str) else None',
        '    value = body.get("website_token")\n    if isinstance(value, str) and value:\n        return value\n    return request.query.get("website_token")',
        "body token wins over query",
    ),
    M(
        CONTEXT,
        '    if found["account_status"] != "active":\n        raise unauthorized("Account is suspended")\n',
        "",
        "suspended-account refusal deleted",
    ),
    M(
        CONTEXT,
        "    if not plausible_token(token):\n        raise not_found()\n    found",
        "    found",
        "plausible_token check deleted in inbox()",
    ),
    M(CONTEXT, 'if claims["exp"] <= now():', 'if claims["exp"] < now():', "cached exp: <= to <"),
    M(
        CONTEXT,
        '    if claims["exp"] <= now():\n        _claims_cache.pop(key, None)\n        return None\n',
        "",
        "cached expiry re-check deleted",
    ),
    M(CONTEXT, "        _claims_cache.pop(key, None)\n", "", "expired token left in the cache"),
    M(
        CONTEXT,
        "        if len(_claims_cache) >= _CLAIMS_MAX:\n            _claims_cache.clear()\n",
        "",
        "claims cache unbounded",
    ),
    M(
        CONTEXT,
        "if len(_claims_cache) >= _CLAIMS_MAX:",
        "if len(_claims_cache) > _CLAIMS_MAX:",
        "claims cache bound: >= to >",
    ),
    M(
        CONTEXT,
        "    key = (secret, token)",
        "    key = token  # type: ignore[assignment]",
        "claims cache keyed by token only",
    ),
    M(
        CONTEXT,
        'if claims is None or claims["inbox_id"] != box["id"]:',
        "if claims is None:",
        "token's inbox not checked",
    ),
    M(
        CONTEXT,
        "    if found is None:\n        raise not_found()\n    contact, ci = found",
        "    contact, ci = found",
        "unknown source_id not refused",
    ),
    # room.py
    M(ROOM, "len(token) > 128", "len(token) > 129", "pubsub_token 128 -> 129"),
    M(ROOM, "len(token) > 128", "len(token) >= 128", "pubsub_token: > to >="),
    M(ROOM, ' or "\\x00" in token:', ":", "pubsub_token NUL check deleted"),
    M(
        ROOM,
        "not isinstance(token, str) or not token or",
        "not isinstance(token, str) or",
        "empty pubsub_token accepted",
    ),
    M(ROOM, 'ident.get("channel") != "RoomChannel"', "False", "channel name not checked"),
    M(ROOM, "if not isinstance(ident, dict) or", "if", "identifier not checked to be an object"),
    M(ROOM, "    if isinstance(value, bool):\n        return None\n", "", "_as_id accepts bools"),
    M(ROOM, "value.isascii() and value.isdigit()", "value.isdigit()", "_as_id isascii deleted"),
    M(ROOM, "and len(value) <= 19:", "and len(value) <= 20:", "_as_id 19 -> 20 digits"),
    M(ROOM, "and len(value) <= 19:", ":", "_as_id digit-count limit deleted"),
    M(ROOM, "and 0 < value <= MAX_ID", "and 0 <= value <= MAX_ID", "_as_id accepts 0"),
    M(ROOM, "and 0 < value <= MAX_ID", "and 0 < value < MAX_ID", "_as_id max: <= to <"),
    M(ROOM, "and 0 < value <= MAX_ID", "and 0 < value", "_as_id upper bound deleted"),
    M(
        ROOM,
        'if ident.get("user_id") is None:',
        'if "user_id" not in ident:',
        "null user_id taken as an agent",
    ),
    M(
        ROOM,
        '    if user is None:\n        raise Rejected("unknown user token")\n',
        "",
        "unknown user token not rejected",
    ),
    M(
        ROOM,
        '    if role is None:\n        raise Rejected("not a member of that account")\n',
        "",
        "non-member not rejected",
    ),
    M(
        ROOM,
        '            if m["account_id"] == account_id\n',
        "",
        "membership of any account accepted",
    ),
    M(
        ROOM,
        '        if found is None:\n            raise Rejected("unknown contact token")\n',
        "",
        "unknown contact token not rejected",
    ),
    M(
        ROOM,
        "channels=[events.contact_channel(token)],",
        "channels=[],",
        "visitor subscribed to nothing",
    ),
    M(
        ROOM,
        'r["availability"] if r["id"] in online_users else "offline"',
        'r["availability"]',
        "offline agents shown with their availability",
    ),
    M(ROOM, "    if sub.is_agent:\n", "    if True:\n", "visitors get the online contacts"),
    # identity.py: the identity rules
    M(
        IDENTITY,
        'if claims is not None and claims["inbox_id"] == inbox["id"]:',
        "if claims is not None:",
        "a token of another inbox reused",
    ),
    M(
        IDENTITY,
        '    await svc.limiter.check("contacts_per_address", address_subject(address))\n',
        "",
        "new contacts not limited per address",
    ),
    M(
        IDENTITY,
        'if identifier is not None and inbox["hmac_mandatory"]:',
        "if False:",
        "hmac_mandatory ignored",
    ),
    M(
        IDENTITY,
        "    if identifier is None or not identifier_hash_matches(",
        "    if identifier is None or identifier_hash_matches(",
        "a bad hash accepted, a good one refused",
    ),
    M(
        IDENTITY,
        "    if identifier is None or not identifier_hash_matches(",
        "    if False and not identifier_hash_matches(",
        "any identifier_hash proves",
    ),
    M(
        IDENTITY,
        '    return own != identifier or (verified and not contact["identifier_verified"])',
        "    return own != identifier",
        "budget not spent on proving a claimed identifier",
    ),
    M(
        IDENTITY,
        "    if own is None:\n        return False\n",
        "",
        "budget spent on an anonymous contact's first claim",
    ),
    M(
        IDENTITY,
        "        if own is None or own == identifier:\n",
        "        if True:\n",
        "an unproven identifier overwrites the caller's identifier",
    ),
    M(
        IDENTITY,
        "        return await _new_contact(conn, inbox, identifier, verified=False)",
        '        owner = await contacts_store.verified_owner(conn, inbox["account_id"], identifier)\n'
        "        if owner is not None:\n"
        '            ci = await contacts_store.verified_contact_inbox(conn, owner["id"], inbox["id"])\n'
        "            if ci is not None:\n"
        "                return Identity(owner, ci, switched=True)\n"
        "        return await _new_contact(conn, inbox, identifier, verified=False)",
        "an unproven identifier finds the verified owner",
    ),
    M(
        IDENTITY,
        'if own == identifier and contact["identifier_verified"]:',
        "if own == identifier:",
        "proving a claimed identifier keeps the claimed contact",
    ),
    M(
        IDENTITY,
        '        await contacts_store.set_hmac_verified(conn, contact_inbox["id"])  # rule 4a\n',
        "",
        "rule 4a: contact_inbox not marked hmac_verified",
    ),
    M(
        IDENTITY,
        "        return Identity(owner, ci, switched=True)",
        "        return Identity(owner, ci, switched=False)",
        "rule 4b: switch without a new token",
    ),
    M(
        IDENTITY,
        "    if owner is not None:  # rule 4b",
        "    if False:  # rule 4b",
        "rule 4b: the verified owner ignored",
    ),
    M(
        IDENTITY,
        "    if own is None:  # rule 4c",
        "    if False:  # rule 4c",
        "rule 4c: anonymous contact not verified in place",
    ),
    M(
        IDENTITY,
        '{"identifier": identifier, "identifier_verified": True}',
        '{"identifier": identifier}',
        "rule 4c: contact not marked verified",
    ),
    M(
        IDENTITY,
        "    return await _new_contact(conn, inbox, identifier, verified=True)  # rule 4d",
        "    contact = await contacts_store.update_contact(\n"
        '        conn, contact["id"], {"identifier": identifier, "identifier_verified": True}\n'
        "    )\n"
        "    return Identity(contact, contact_inbox, switched=False)  # rule 4d",
        "rule 4d: the claimed contact becomes verified",
    ),
    M(
        IDENTITY,
        "        identifier_verified=verified,\n        hmac_verified=verified,\n",
        "        identifier_verified=True,\n        hmac_verified=True,\n",
        "a new contact for an unproven claim is verified",
    ),
    # hub.py: gap-free delivery of each stream (issue 14)
    M(
        HUB,
        "            if offset == stream.offset + 1:",
        "            if offset >= stream.offset + 1:",
        "a gap delivered without catching up",
    ),
    M(
        HUB,
        "            if offset <= stream.offset:\n                return  # delivered already",
        "            if False:\n                return  # delivered already",
        "an event read from the history delivered again live",
    ),
    M(
        HUB,
        "            for payload in held:\n                self._on_stream_event(channel, payload)",
        "            pass",
        "live events held during a catch-up lost",
    ),
    M(
        HUB,
        "            if history.complete:",
        "            if True:",
        "an incomplete history trusted",
    ),
    M(
        HUB,
        "        if channels:\n            self._spawn(self._catch_up(channels))",
        "        pass",
        "no catch-up after the bus subscribed again",
    ),
    M(
        HUB,
        "                    stream.epoch, stream.offset = position.epoch.encode(), position.offset",
        "                    pass",
        "the stream's position not read before listening",
    ),
    M(
        HUB,
        "        key = (channel, conversation_id or 0)",
        "        key = (channel, 0)",
        "dedupe per channel, not per conversation",
    ),
    M(
        HUB,
        "                self.streams.pop(channel, None)\n",
        "",
        "a stream kept after its last listener left",
    ),
    M(
        HUB,
        "                del self.channels[channel]\n                self.streams.pop(channel, None)\n                await self.bus.unsubscribe(channel)",
        "                del self.channels[channel]\n                self.streams.pop(channel, None)",
        "not unsubscribing from a channel on the bus",
    ),
    M(
        HUB,
        "        if len(self._delivered) > self.dedupe_entries:",
        "        if False:",
        "the dedupe map without its bound",
    ),
]


def run(tests: list[str]) -> tuple[str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.monotonic() - started
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    if proc.returncode == 0:
        return "SURVIVED", elapsed
    if failed:
        return failed[0], elapsed
    return f"rc={proc.returncode}: {proc.stdout[-300:]}", elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated parts of mutation names")
    parser.add_argument(
        "--old-only", action="store_true", help="run only the tests that predate the new files"
    )
    args = parser.parse_args()
    print("| file | mutation | killed by | s |")
    print("|---|---|---|---|")
    for m in MUTATIONS:
        wanted = [w for w in args.only.split(",") if w]
        if wanted and not any(w in m.what or w in m.path for w in wanted):
            continue
        path = ROOT / m.path
        original = path.read_text()
        if original.count(m.old) != 1:
            print(
                f"| {m.path} | {m.what} | STALE ({original.count(m.old)} matches) | |", flush=True
            )
            continue
        tests = {ROOM: ROOM_TESTS, IDENTITY: IDENTITY_TESTS, HUB: HUB_TESTS}.get(
            m.path, WIDGET_TESTS
        )
        if args.old_only:
            tests = [t for t in tests if t not in NEW_TESTS]
        try:
            path.write_text(original.replace(m.old, m.new))
            killer, elapsed = run(tests)
        finally:
            path.write_text(original)
        print(f"| {m.path} | {m.what} | {killer} | {elapsed:.0f} |", flush=True)


if __name__ == "__main__":
    main()
