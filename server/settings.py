"""Every setting the server reads, taken from the environment once, at start.

The defaults make `python -m server` run with no services at all: a SQLite file under
`./data/`, the in-process bus and the in-process outbox relay.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from server import gc_tuning
from server.client_address import Network, parse_networks
from server.ratelimit.rules import RateLimits


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


def _positive(value: float, name: str) -> float:
    if not 0 < value < math.inf:  # also refuses nan
        raise SystemExit(f"{name} must be greater than 0 (and finite), got {value}")
    return value


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    """A deadline: more than 0 and at most an hour (a typo like 100000 is not a deadline)."""
    value = _float(env, name, default)
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise SystemExit(f"{name} must be more than 0 and at most 3600 seconds, got {value}")
    return value


def _at_least(value: int, minimum: int, name: str) -> int:
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, got {value}")
    return value


def _between(value: int, name: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise SystemExit(f"{name} must be between {low} and {high}, got {value}")
    return value


def _drain(env: dict[str, str]) -> float:
    value = _float(env, "SHUTDOWN_DRAIN", 0.0)
    if not 0 <= value <= 300:  # also refuses nan and inf
        raise SystemExit(f"SHUTDOWN_DRAIN must be between 0 and 300 seconds, got {value}")
    return value


def _port(env: dict[str, str], name: str) -> int | None:
    if not (env.get(name) or "").strip():
        return None
    value = _int(env, name, 0)
    if not 1 <= value <= 65535:
        raise SystemExit(f"{name} must be a TCP port (1 to 65535), got {value}")
    return value


def _metrics_token(env: dict[str, str]) -> str | None:
    token = (env.get("METRICS_TOKEN") or "").strip()
    if token and (len(token) < 16 or not token.isascii() or not token.isprintable()):
        raise SystemExit("METRICS_TOKEN must be at least 16 printable ASCII characters")
    return token or None


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: dict[str, str]) -> str:
    value = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if value not in LOG_LEVELS:
        raise SystemExit(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value


def _scheme(url: str) -> str:
    """What a URL is, for an error message: its scheme only (never a password)."""
    return repr(url.split("://", 1)[0] + "://...") if "://" in url else "a value without a scheme"


def _db_timeout(env: dict[str, str]) -> float:
    """DB_TIMEOUT: at least 0.1 s (less fails healthy calls) and at most 600 s (a client
    gives up long before; a deadline that long is no deadline)."""
    value = _float(env, "DB_TIMEOUT", 5.0)
    if not 0.1 <= value <= 600:  # also refuses nan and inf
        raise SystemExit(f"DB_TIMEOUT must be between 0.1 and 600 seconds, got {value}")
    return value


def _session_ttl(env: dict[str, str]) -> float:
    """SESSION_TTL: 0 (no sessions) to a day; a restore after longer would bring back a
    socket whose history is long gone (HISTORY_TTL) anyway."""
    value = _float(env, "SESSION_TTL", 300.0)
    if not 0 <= value <= 86400:  # also refuses nan and inf
        raise SystemExit(f"SESSION_TTL must be between 0 and 86400 seconds, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key_base(data_dir: Path) -> str:
    """Keep a generated secret on disk so contact JWTs survive a restart."""
    path = data_dir / "secret_key_base"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(64)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(secret)
    tmp.chmod(0o600)
    tmp.replace(path)
    return secret


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    secret_key_base: str
    host: str = "127.0.0.1"
    port: int = 3000
    log_level: str = "INFO"
    log_format: str = "plain"  # or "json": one object per line (server/logs.py)
    access_log: bool = True
    data_dir: Path = field(default_factory=lambda: Path("data"))
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    elevenlabs_timeout: float = 10.0
    widget_token_expiry_days: int = 180
    max_body_bytes: int = 1024 * 1024
    max_message_length: int = 150_000
    messages_per_minute: int = 200
    # Serialized size of one merged attribute map (server/attributes.py): every event and
    # listing about a contact or conversation carries its maps.
    max_attributes_bytes: int = 16 * 1024
    seed_demo: bool = True
    # Realtime
    run_relay: bool = True
    ping_interval: float = 3.0
    send_queue_size: int = 256
    # Bytes of frames one socket may have queued (server/hub/connection.py); past this or
    # send_queue_size frames, it is a slow consumer and is closed.
    send_queue_bytes: int = 4 * 1024 * 1024
    max_subscriptions_per_socket: int = 32
    shutdown_grace: float = 5.0
    # Seconds a stopping web process answers /readyz 503 while still serving, before its
    # sockets are told to reconnect elsewhere (server/health.py); and each probe's deadline.
    shutdown_drain: float = 0.0
    health_timeout: float = 2.0
    # Where `python -m workers` serves /livez and /readyz (None: it does not).
    worker_health_port: int | None = None
    # Bearer token for GET /metrics; None: loopback clients only (server/metrics.py).
    metrics_token: str | None = None
    relay_poll_interval: float = 1.0
    relay_lease_ttl: float = 5.0
    # A relay whose round of work (database, publish) takes longer than this gives its lease
    # up for another to take (workers/relay.py).
    relay_stall_timeout: float = 30.0
    # Dead connections (server/bus/health.py): seconds to wait for any Redis answer (a
    # command, a connect, the pub/sub connection's PING), and seconds between two health
    # checks of a connection (PING on the pub/sub connection; before reusing an idle pooled
    # one; TCP keepalive's idle time).
    redis_timeout: float = 3.0
    redis_health_interval: float = 3.0
    # Each bus channel's stream history (server/bus/streams.py): events kept per stream, and
    # seconds a stream's history lives after its last event. A web process (or a resuming
    # client) that misses more than this resyncs its sockets instead of catching up.
    history_limit: int = 1000
    history_bytes: int = 1 << 20
    history_ttl: float = 300.0
    # Seconds an extended-protocol session (server/hub/sessions.py) is kept after its last
    # change or its socket's close, for a reconnect to restore it; 0: no sessions.
    session_ttl: float = 300.0
    # Seconds a published outbox event is kept before it is pruned (workers/maintenance.py).
    outbox_retention: float = 3600.0
    # Concurrent write transactions per process on PostgreSQL (server/store/db.py).
    db_writers: int = 6
    # Seconds a database call may take, waiting for its turn included; past it the API
    # answers 503 with Retry-After and nothing of the call commits (server/store/db.py).
    db_timeout: float = 5.0
    # None: Python's own garbage collector settings (see server/gc_tuning.py).
    gc_threshold: tuple[int, ...] | None = (10_000, 20, 20)
    # Peers whose X-Forwarded-For is believed (server/client_address.py).
    trusted_proxies: tuple[Network, ...] = ()
    # What one connection may hold (server/connections.py): seconds to send the first request
    # head after connecting, to send a request body, to send the next request on an idle
    # keep-alive connection, and for a /cable socket to confirm a subscription.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    cable_subscribe_timeout: float = 10.0
    # Open connections per client address, and descriptors kept back from client connections
    # for the database, Redis, logs and outgoing requests.
    max_connections_per_address: int = 256
    fd_reserve: int = 128
    # LIMIT_*: what visitors and sockets may create or cost (server/ratelimit/rules.py).
    rate_limits: RateLimits = field(default_factory=RateLimits)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("DATA_DIR") or "data")
        database_url = env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'chat.db'}"
        database_url = normalize_database_url(database_url)
        if not database_url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
            raise SystemExit(
                "DATABASE_URL must be sqlite:///PATH or postgresql://USER@HOST/DB, got "
                f"{_scheme(database_url)}"
            )
        redis_url = env.get("REDIS_URL") or None
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SystemExit(
                f"REDIS_URL must be redis://, rediss:// or unix://, got {_scheme(redis_url)}"
            )
        values: dict[str, object] = dict(
            database_url=database_url,
            redis_url=redis_url,
            secret_key_base=env.get("SECRET_KEY_BASE") or _secret_key_base(data_dir),
            host=env.get("HOST") or "127.0.0.1",
            port=_between(_int(env, "PORT", 3000), "PORT", 1, 65535),
            log_level=_log_level(env),
            log_format=_choice(env, "LOG_FORMAT", ("plain", "json")),
            access_log=_bool(env, "ACCESS_LOG", True),
            data_dir=data_dir,
            elevenlabs_base_url=(env.get("ELEVENLABS_BASE_URL") or "https://api.elevenlabs.io"),
            elevenlabs_timeout=_positive(
                _float(env, "ELEVENLABS_TIMEOUT", 10.0), "ELEVENLABS_TIMEOUT"
            ),
            widget_token_expiry_days=_between(
                _int(env, "WIDGET_TOKEN_EXPIRY", 180), "WIDGET_TOKEN_EXPIRY", 1, 3650
            ),
            max_body_bytes=_between(
                _int(env, "MAX_BODY_BYTES", 1024 * 1024), "MAX_BODY_BYTES", 1024, 1 << 30
            ),
            messages_per_minute=_at_least(
                _int(env, "MESSAGES_PER_MINUTE", 200), 1, "MESSAGES_PER_MINUTE"
            ),
            max_attributes_bytes=_between(
                _int(env, "MAX_ATTRIBUTES_BYTES", 16 * 1024), "MAX_ATTRIBUTES_BYTES", 1024, 1 << 20
            ),
            # The demo account (and its logged admin token) only where nobody else is: on
            # the embedded default. A PostgreSQL deploy makes its accounts with `admin`.
            seed_demo=_bool(env, "SEED_DEMO", database_url.startswith("sqlite")),
            # With Redis the relay normally runs in `python -m workers`; RUN_RELAY=1 forces it
            # into the web process as well (safe: a lease keeps one relay active).
            run_relay=_bool(env, "RUN_RELAY", redis_url is None),
            ping_interval=_seconds(env, "PING_INTERVAL", 3.0),
            send_queue_size=_between(
                _int(env, "SEND_QUEUE_SIZE", 256), "SEND_QUEUE_SIZE", 1, 1_000_000
            ),
            send_queue_bytes=_between(
                _int(env, "SEND_QUEUE_BYTES", 4 << 20), "SEND_QUEUE_BYTES", 64 << 10, 1 << 30
            ),
            shutdown_grace=_seconds(env, "SHUTDOWN_GRACE", 5.0),
            shutdown_drain=_drain(env),
            health_timeout=_seconds(env, "HEALTH_TIMEOUT", 2.0),
            worker_health_port=_port(env, "WORKER_HEALTH_PORT"),
            metrics_token=_metrics_token(env),
            relay_poll_interval=_seconds(env, "RELAY_POLL_INTERVAL", 1.0),
            relay_lease_ttl=_seconds(env, "RELAY_LEASE_TTL", 5.0),
            relay_stall_timeout=_seconds(env, "RELAY_STALL_TIMEOUT", 30.0),
            redis_timeout=_seconds(env, "REDIS_TIMEOUT", 3.0),
            redis_health_interval=_seconds(env, "REDIS_HEALTH_INTERVAL", 3.0),
            history_limit=_between(_int(env, "HISTORY_LIMIT", 1000), "HISTORY_LIMIT", 1, 100_000),
            history_bytes=_between(
                _int(env, "HISTORY_BYTES", 1 << 20), "HISTORY_BYTES", 64 << 10, 1 << 30
            ),
            history_ttl=_seconds(env, "HISTORY_TTL", 300.0),
            session_ttl=_session_ttl(env),
            outbox_retention=_positive(_float(env, "OUTBOX_RETENTION", 3600.0), "OUTBOX_RETENTION"),
            db_writers=_between(_int(env, "DB_WRITERS", 6), "DB_WRITERS", 1, 256),
            db_timeout=_db_timeout(env),
            gc_threshold=gc_tuning.parse_threshold(env.get("GC_THRESHOLD")),
            trusted_proxies=parse_networks(env.get("TRUSTED_PROXIES")),
            header_timeout=_seconds(env, "HEADER_TIMEOUT", 10.0),
            body_timeout=_seconds(env, "BODY_TIMEOUT", 30.0),
            keepalive_timeout=_seconds(env, "KEEPALIVE_TIMEOUT", 15.0),
            cable_subscribe_timeout=_seconds(env, "CABLE_SUBSCRIBE_TIMEOUT", 10.0),
            max_connections_per_address=_at_least(
                _int(env, "MAX_CONNECTIONS_PER_ADDRESS", 256), 1, "MAX_CONNECTIONS_PER_ADDRESS"
            ),
            fd_reserve=_at_least(_int(env, "FD_RESERVE", 128), 16, "FD_RESERVE"),
            rate_limits=RateLimits.from_env(env),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def normalize_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, sqlite:///) and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url
