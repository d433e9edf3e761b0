"""The rate limit rules without a server: LIMIT_* validation, the GCRA arithmetic against a
simulated clock (normal use for hours never meets a default; the issue's floods do), and the
in-process engine staying bounded."""

from __future__ import annotations

import pytest

from server.ratelimit import (
    MemoryEngine,
    Rate,
    RateLimits,
    SocketLimited,
    SocketLimits,
    address_subject,
)
from server.ratelimit.engines import gcra
from server.ratelimit.rules import parse_rate
from server.settings import Settings

DEFAULTS = RateLimits()


def test_parse_rate_forms() -> None:
    assert parse_rate("30/60") == Rate(30, 60)
    assert parse_rate("30/1m") == Rate(30, 60)
    assert parse_rate(" 10 / h ") == Rate(10, 3600)
    assert parse_rate("5/0.5s") == Rate(5, 0.5)
    assert parse_rate("off") is None
    assert parse_rate("OFF") is None


@pytest.mark.parametrize("raw", ["abc", "30", "30/", "0/60", "30/0", "-1/60", "30/60x", "1e3/60"])
def test_bad_limit_stops_the_process_naming_the_variable(raw: str) -> None:
    with pytest.raises(SystemExit, match="LIMIT_CONTACTS_PER_ADDRESS"):
        Settings.from_env(
            {"SECRET_KEY_BASE": "s" * 40, "LIMIT_CONTACTS_PER_ADDRESS": raw, "DATA_DIR": "/tmp"}
        )


def test_every_limit_is_a_setting() -> None:
    env = {
        "SECRET_KEY_BASE": "s" * 40,
        "DATA_DIR": "/tmp",
        "LIMIT_CONTACTS_PER_ADDRESS": "1/1",
        "LIMIT_CONVERSATIONS_PER_CONTACT": "2/2",
        "LIMIT_VOICE_URLS_PER_VISITOR": "3/3",
        "LIMIT_VOICE_URLS_PER_INBOX": "4/4",
        "LIMIT_TYPING_PER_SENDER": "5/5",
        "LIMIT_PRESENCE_PER_SOCKET": "6/6",
        "LIMIT_FAILED_SUBSCRIBES_PER_SOCKET": "off",
    }
    limits = Settings.from_env(env).rate_limits
    assert limits == RateLimits(
        Rate(1, 1), Rate(2, 2), Rate(3, 3), Rate(4, 4), Rate(5, 5), Rate(6, 6), None
    )
    assert Settings.from_env({"SECRET_KEY_BASE": "s" * 40, "DATA_DIR": "/tmp"}).rate_limits == (
        DEFAULTS
    )


def refusals(rate: Rate | None, times: list[float]) -> int:
    """How many of requests at `times` (seconds) one subject's budget refuses."""
    assert rate is not None
    tat, refused = None, 0
    for now in times:
        new, wait = gcra(tat, now, rate)
        if wait:
            refused += 1
        else:
            tat = new
    return refused


def every(seconds: float, hours: float, start: float = 1000.0) -> list[float]:
    return [start + i * seconds for i in range(int(hours * 3600 / seconds))]


def test_normal_use_for_hours_never_meets_a_default() -> None:
    # A visitor whose storage is blocked (a new contact on every load), reloading 4 times a
    # minute for two hours, with two neighbours behind the same NAT doing the same.
    assert refusals(DEFAULTS.contacts_per_address, sorted(every(5, 2) * 1)) == 0
    # A new conversation every 2 minutes, resolved in between, for two hours.
    assert refusals(DEFAULTS.conversations_per_contact, every(120, 2)) == 0
    # A voice call started every minute, for an hour.
    assert refusals(DEFAULTS.voice_urls_per_visitor, every(60, 1)) == 0
    # Typing on/off on every keystroke: 60 toggles in 15 s, then a 15 s pause, for an hour.
    bursts = [b + i * 0.25 for b in every(30, 1) for i in range(60)]
    assert refusals(DEFAULTS.typing_per_sender, bursts) == 0
    # update_presence every 20 s on a socket, for 8 hours.
    assert refusals(DEFAULTS.presence_per_socket, every(20, 8)) == 0


def test_the_issue_floods_meet_the_defaults() -> None:
    def burst(n: int, seconds: float) -> list[float]:
        return [1000.0 + i * seconds / n for i in range(n)]

    # 300 contacts in 0.3 s: 30 pass.
    assert refusals(DEFAULTS.contacts_per_address, burst(300, 0.3)) == 270
    # 300 conversations in 0.7 s: 10 pass.
    assert refusals(DEFAULTS.conversations_per_contact, burst(300, 0.7)) == 290
    assert refusals(DEFAULTS.voice_urls_per_visitor, burst(300, 1)) == 290
    # 104,600 presence frames in 10 s on one socket: 20 pass, and a few as time moves on.
    assert refusals(DEFAULTS.presence_per_socket, burst(104_600, 10)) >= 104_600 - 24
    assert refusals(DEFAULTS.failed_subscribes_per_socket, burst(3000, 1)) == 2990


def test_gcra_retry_after_is_when_the_next_request_passes() -> None:
    rate = Rate(3, 60)
    tat = None
    for _ in range(3):
        tat, wait = gcra(tat, 0.0, rate)
        assert wait == 0.0
    _, wait = gcra(tat, 0.0, rate)
    assert wait == pytest.approx(20.0)
    _, wait = gcra(tat, 19.9, rate)
    assert wait == pytest.approx(0.1)
    _, wait = gcra(tat, 20.0, rate)
    assert wait == 0.0


def test_memory_engine_is_bounded_and_forgets_full_budgets() -> None:
    engine = MemoryEngine(max_keys=1000)
    rate = Rate(5, 60)
    for i in range(5000):
        assert engine.hit_now(f"addr-{i}", rate, 100.0) == 0.0
        assert len(engine) <= 1000
    assert engine.resets >= 4
    # Entries whose budget is full again are swept (periodically, and when full).
    engine = MemoryEngine(max_keys=1000)
    for i in range(900):
        engine.hit_now(f"addr-{i}", rate, 100.0)
    engine.hit_now("late", rate, 100.0 + engine.SWEEP_EVERY + 13)  # 1 interval is 12 s
    assert len(engine) == 1
    assert engine.resets == 0


def test_address_subject() -> None:
    assert address_subject("198.51.100.7") == "198.51.100.7"
    assert address_subject("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_subject("::ffff:198.51.100.7") == "198.51.100.7"
    assert address_subject("not an address") == "not an address"


def test_socket_limits_raise_past_the_budget() -> None:
    limits = SocketLimits(RateLimits(presence_per_socket=Rate(3, 3600)))
    for _ in range(3):
        limits.spend("presence_per_socket")
    with pytest.raises(SocketLimited) as exc:
        limits.spend("presence_per_socket")
    assert exc.value.name == "presence_per_socket"
    assert "LIMIT_PRESENCE_PER_SOCKET" in str(exc.value)
    off = SocketLimits(RateLimits(presence_per_socket=None))
    for _ in range(1000):
        off.spend("presence_per_socket")
