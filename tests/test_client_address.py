"""Which address a request counts against: X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

import pytest

from server.client_address import parse_networks, resolve
from server.settings import Settings

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1")


def test_untrusted_peer_header_is_ignored() -> None:
    assert resolve("203.0.113.9", "1.2.3.4", PROXIES) == "203.0.113.9"


def test_no_trusted_proxies_means_the_peer() -> None:
    assert resolve("127.0.0.1", "1.2.3.4", ()) == "127.0.0.1"


def test_trusted_peer_gives_the_nearest_untrusted_hop() -> None:
    # The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
    assert resolve("127.0.0.1", "6.6.6.6, 198.51.100.7", PROXIES) == "198.51.100.7"
    assert resolve("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9", PROXIES) == "198.51.100.7"


def test_trusted_peer_without_header_is_the_peer() -> None:
    assert resolve("127.0.0.1", None, PROXIES) == "127.0.0.1"


def test_garbage_hop_counts_as_the_proxy() -> None:
    assert resolve("127.0.0.1", "not-an-ip", PROXIES) == "127.0.0.1"


def test_ipv6_and_mapped_ipv4() -> None:
    nets = parse_networks("::1,192.0.2.0/24")
    assert resolve("::1", "2001:db8::5", nets) == "2001:db8::5"
    assert resolve("::ffff:192.0.2.1", "198.51.100.1", nets) == "198.51.100.1"


def test_setting_is_validated() -> None:
    env = {"SECRET_KEY_BASE": "x" * 40, "TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}
    with pytest.raises(SystemExit, match="TRUSTED_PROXIES"):
        Settings.from_env(env)
    ok = Settings.from_env({"SECRET_KEY_BASE": "x" * 40, "TRUSTED_PROXIES": "10.0.0.0/8"})
    assert len(ok.trusted_proxies) == 1
