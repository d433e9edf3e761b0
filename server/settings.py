"""Every setting the server reads, taken from the environment once, at start, and validated
in one place: one pydantic-settings model, a field per variable with its constraint.

The defaults make `python -m server` run with no services at all: a SQLite file under
`./data/`, the in-process bus and the in-process outbox relay.

Every bad value is reported at once, in one line naming each variable, what it must be and
what it got (never a secret's value, never a URL's credentials): `SettingsError`, which the
entry points turn into one ERROR line and exit status 2. A process that starts has settings
it can run with.
"""

from __future__ import annotations

import contextvars
import os
import secrets
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from server import gc_tuning
from server.client_address import Network, parse_networks
from server.ratelimit.rules import Rate, RateLimits, env_name, parse_rate

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Fields that are fixed values, not settings: never read from the environment (tests may
# still pass them to `from_env`).
FIXED = frozenset({"max_message_length", "max_subscriptions_per_socket"})

# Never echoed back in an error message.
SECRETS = frozenset({"secret_key_base", "metrics_token", "s3_secret_access_key", "smtp_url"})

_DEFAULT_LIMITS = RateLimits()


class SettingsError(SystemExit):
    """Settings a process cannot run with: `str()` is one line naming every bad variable.
    A SystemExit, so a script that does not catch it still ends with the message and no
    traceback; `python -m server` and `python -m workers` log it and exit with status 2."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"invalid settings ({len(problems)}), fix and start again: " + "; ".join(problems)
        )

    def __str__(self) -> str:
        return str(self.code)


# --- constraints, each said once: the description is what an error message says it "must be"


def deadline(default: float) -> Any:
    """Seconds to wait for something: more than 0 and at most an hour (a typo like 100000
    is not a deadline; also refuses nan and inf)."""
    return Field(default, gt=0, le=3600, description="more than 0 and at most 3600 seconds")


def positive(default: float) -> Any:
    return Field(default, gt=0, allow_inf_nan=False, description="greater than 0 (and finite)")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def between(default: Any, low: float, high: float, unit: str = "") -> Any:
    return Field(
        default, ge=low, le=high, description=f"between {_number(low)} and {_number(high)}{unit}"
    )


def at_least(default: int, low: int) -> Any:
    return Field(default, ge=low, description=f"at least {low}")


def tcp_port(default: int | None) -> Any:
    return Field(default, ge=1, le=65535, description="a TCP port (1 to 65535)")


def flag(default: bool | None) -> Any:
    return Field(default, description="1 or 0 (or true/false, yes/no, on/off)")


# --- parsers of the values that are not a plain number, flag or word


def _upper(raw: Any) -> Any:
    return raw.strip().upper() if isinstance(raw, str) else raw


def _lower(raw: Any) -> Any:
    return raw.strip().lower() if isinstance(raw, str) else raw


def _scheme(url: str) -> str:
    """What a URL is, for an error message: its scheme only (never a password)."""
    return repr(url.split("://", 1)[0] + "://...") if "://" in url else "a value without a scheme"


def normalize_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, sqlite:///) and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def _database_url(raw: str) -> str:
    url = normalize_database_url(raw.strip())
    if not url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
        raise ValueError(f"must be sqlite:///PATH or postgresql://USER@HOST/DB, got {_scheme(raw)}")
    return url


def _redis_url(raw: str | None) -> str | None:
    if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"must be redis://, rediss:// or unix://, got {_scheme(raw)}")
    return raw or None


def _http_url(raw: str) -> str:
    if not raw.startswith(("https://", "http://")) or len(raw) <= len("https://"):
        raise ValueError(f"must be an http:// or https:// URL, got {_scheme(raw)}")
    return raw.rstrip("/")


def _optional_http_url(raw: str | None) -> str | None:
    return _http_url(raw) if raw else None


def _storage_url(raw: str | None) -> str | None:
    url = (raw or "").strip()
    if not url:
        return None
    if url.startswith("s3://"):
        bucket = url[len("s3://") :].split("/", 1)[0]
        if not bucket:
            raise ValueError("must name a bucket: s3://BUCKET/PREFIX")
        return url
    if url.startswith("file:///"):
        return url
    raise ValueError(f"must be s3://BUCKET/PREFIX or file:///PATH, got {_scheme(url)}")


def _metrics_token(raw: str | None) -> str | None:
    token = (raw or "").strip()
    if token and (len(token) < 16 or not token.isascii() or not token.isprintable()):
        raise ValueError("must be at least 16 printable ASCII characters")
    return token or None


def _smtp_url(raw: str | None) -> str | None:
    from server.mail.mailer import parse_smtp_url

    if raw:
        parse_smtp_url(raw)  # its ValueError names the problem, never the password
    return raw or None


def _mail_from(raw: str | None) -> str | None:
    from server.mail.transcript import Undeliverable, plain_address

    if not raw:
        return None
    try:
        return plain_address(raw.strip())
    except Undeliverable:
        raise ValueError(f"must be a plain email address (name@example.com), got {raw!r}") from None


def _threshold(raw: Any) -> Any:
    return gc_tuning.parse_threshold(raw) if isinstance(raw, str) else raw


def _networks(raw: Any) -> Any:
    return parse_networks(raw) if isinstance(raw, str) else raw


def _rate(raw: Any) -> Any:
    return parse_rate(raw) if isinstance(raw, str) else raw


RateSetting = Annotated[
    Rate | None,
    NoDecode,
    BeforeValidator(_rate),
    Field(description="COUNT/SECONDS (e.g. 30/60, 30/1m, 10/h) or off"),
]


class _Environ(EnvSettingsSource):
    """The environment `Settings.from_env` was given (os.environ by default), without the
    fixed values."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        # Names are matched case-insensitively (lower-cased, as pydantic-settings does);
        # VAR= counts as unset.
        return {
            name.lower(): value
            for name, value in (os.environ if environ is None else environ).items()
            if value != ""
        }

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in FIXED:
            return None, field_name, False
        return super().get_field_value(field, field_name)


_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "settings_environ", default=None
)


class Settings(BaseSettings):
    """One field per environment variable (its name upper-cased, or its alias)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        env_ignore_empty=True,  # VAR= is VAR unset, as it always was
        validate_by_name=True,
        validate_by_alias=True,
    )

    # Unset: sqlite:///DATA_DIR/chat.db, the embedded default.
    database_url: Annotated[str, AfterValidator(_database_url)] = Field(
        description="sqlite:///PATH or postgresql://USER@HOST/DB"
    )
    redis_url: Annotated[str | None, AfterValidator(_redis_url)] = Field(
        None, description="redis://, rediss:// or unix://"
    )
    # Unset: generated once and kept in DATA_DIR/secret_key_base (see from_env).
    secret_key_base: str | None = Field(None, min_length=1, description="a secret")
    host: str = Field("127.0.0.1", min_length=1, description="an address to listen on")
    port: int = tcp_port(3000)
    log_level: Annotated[Literal[LOG_LEVELS], BeforeValidator(_upper)] = Field(  # type: ignore[valid-type]
        "INFO", description=f"one of {', '.join(LOG_LEVELS)}"
    )
    # "json": one object per line (server/logs.py).
    log_format: Annotated[Literal["plain", "json"], BeforeValidator(_lower)] = Field(
        "plain", description="one of plain, json"
    )
    access_log: bool = flag(True)
    # /metrics, the HTTP and database latency histograms; 0 turns them all off.
    metrics_enabled: bool = flag(True)
    data_dir: Path = Field(Path("data"), description="a directory path")
    elevenlabs_base_url: Annotated[str, AfterValidator(_http_url)] = Field(
        "https://api.elevenlabs.io", description="an http:// or https:// URL"
    )
    elevenlabs_timeout: float = positive(10.0)
    # Seconds without a heartbeat after which the server ends a voice call ("heartbeat_lost",
    # workers/voice_sweeper.py); the fork's widget sends one every 3 s and counts a call
    # live for 20 s after the last.
    voice_heartbeat_timeout: float = between(20.0, 1, 3600, " seconds")
    # Seconds within which a voice turn without an event_id, identical to the last turn of its
    # role in the same call, is that turn again (answered with "duplicate": true); 0: never.
    voice_duplicate_window: float = between(10.0, 0, 3600, " seconds")
    # Seconds before the first retry of an ended call's transcript fetch, when ElevenLabs
    # failed or was still processing the call; each retry waits twice as long as the one
    # before (VOICE_RECONCILE_ATTEMPTS fetches in all, then the post-call webhook is left).
    voice_reconcile_retry: float = between(30.0, 0.05, 3600, " seconds")
    voice_reconcile_attempts: int = between(5, 1, 20)
    widget_token_expiry_days: int = Field(
        180,
        ge=1,
        le=3650,
        validation_alias="WIDGET_TOKEN_EXPIRY",
        description="between 1 and 3650 days",
    )
    max_body_bytes: int = between(1024 * 1024, 1024, 1 << 30)
    max_message_length: int = Field(150_000, ge=1, description="at least 1")  # fixed
    messages_per_minute: int = at_least(200, 1)
    # Serialized size of one merged attribute map (server/attributes.py): every event and
    # listing about a contact or conversation carries its maps.
    max_attributes_bytes: int = between(16 * 1024, 1024, 1 << 20)
    # The demo account (and its logged admin token) only where nobody else is: unset, on
    # with SQLite (the embedded default), off with PostgreSQL (make accounts with `admin`).
    seed_demo: bool = flag(None)  # type: ignore[assignment]
    # Migrate the schema at start; unset: on with SQLite (one process owns the file), off
    # with PostgreSQL, where `python -m server migrate` runs before the processes start
    # and a process finding the schema behind refuses to start (server/store/migrate.py).
    auto_migrate: bool = flag(None)  # type: ignore[assignment]
    # With Redis the relay normally runs in `python -m workers`; RUN_RELAY=1 forces it into
    # the web process as well (safe: a lease keeps one relay active). Unset: on without
    # Redis.
    run_relay: bool = flag(None)  # type: ignore[assignment]
    # Realtime
    ping_interval: float = deadline(3.0)
    send_queue_size: int = between(256, 1, 1_000_000)
    # Bytes of frames one socket may have queued (server/hub/connection.py); past this or
    # send_queue_size frames, it is a slow consumer and is closed.
    send_queue_bytes: int = between(4 << 20, 64 << 10, 1 << 30)
    max_subscriptions_per_socket: int = Field(32, ge=1, description="at least 1")  # fixed
    shutdown_grace: float = deadline(5.0)
    # Seconds a stopping web process answers /readyz 503 while still serving, before its
    # sockets are told to reconnect elsewhere (server/health.py); and each probe's deadline.
    shutdown_drain: float = between(0.0, 0, 300, " seconds")
    health_timeout: float = deadline(2.0)
    # Where `python -m workers` serves /livez and /readyz (None: it does not).
    worker_health_port: int | None = tcp_port(None)
    # Bearer token for GET /metrics; None: loopback clients only (server/metrics.py).
    metrics_token: Annotated[str | None, AfterValidator(_metrics_token)] = Field(
        None, description="at least 16 printable ASCII characters"
    )
    relay_poll_interval: float = deadline(1.0)
    relay_lease_ttl: float = deadline(5.0)
    # A relay whose round of work (database, publish) takes longer than this gives its lease
    # up for another to take (workers/relay.py).
    relay_stall_timeout: float = deadline(30.0)
    # Dead connections (server/bus/health.py): seconds to wait for any Redis answer (a
    # command, a connect, the pub/sub connection's PING), and seconds between two health
    # checks of a connection (PING on the pub/sub connection; before reusing an idle pooled
    # one; TCP keepalive's idle time).
    redis_timeout: float = deadline(3.0)
    redis_health_interval: float = deadline(3.0)
    # Each bus channel's stream history (server/bus/streams.py): events and bytes kept per
    # stream, and seconds a stream's history lives after its last event. A web process (or a
    # resuming client) that misses more than this resyncs its sockets instead of catching up.
    history_limit: int = between(1000, 1, 100_000)
    history_bytes: int = between(1 << 20, 64 << 10, 1 << 30, " bytes")
    history_ttl: float = deadline(300.0)
    # Seconds an extended-protocol session (server/hub/sessions.py) is kept after its last
    # change or its socket's close, for a reconnect to restore it; 0: no sessions. At most a
    # day: a restore after longer would find the history long gone (HISTORY_TTL) anyway.
    session_ttl: float = between(300.0, 0, 86400, " seconds")
    # Seconds a published outbox event is kept before it is pruned (workers/maintenance.py).
    outbox_retention: float = positive(3600.0)
    # Concurrent write transactions per process on PostgreSQL (server/store/db.py).
    db_writers: int = between(6, 1, 256)
    # Seconds a database call may take, waiting for its turn included; past it the API
    # answers 503 with Retry-After and nothing of the call commits (server/store/db.py).
    # At least 0.1 s (less fails healthy calls), at most 600 (a client gives up long before).
    db_timeout: float = between(5.0, 0.1, 600, " seconds")
    # None: Python's own garbage collector settings (see server/gc_tuning.py).
    gc_threshold: Annotated[tuple[int, ...] | None, NoDecode, BeforeValidator(_threshold)] = Field(
        (10_000, 20, 20), description="1 to 3 integers >= 0, or default"
    )
    # Peers whose X-Forwarded-For is believed (server/client_address.py).
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode, BeforeValidator(_networks)] = Field(
        (), description="comma-separated IP addresses or CIDR ranges"
    )
    # What one connection may hold (server/connections.py): seconds to send the first request
    # head after connecting, to send a request body, to send the next request on an idle
    # keep-alive connection, and for a /cable socket to confirm a subscription.
    header_timeout: float = deadline(10.0)
    body_timeout: float = deadline(30.0)
    keepalive_timeout: float = deadline(15.0)
    cable_subscribe_timeout: float = deadline(10.0)
    # Open connections per client address, and descriptors kept back from client connections
    # for the database, Redis, logs and outgoing requests.
    max_connections_per_address: int = at_least(256, 1)
    fd_reserve: int = at_least(128, 16)
    # Attachments (server/storage/, server/uploads.py). Unset STORAGE_URL: files in
    # DATA_DIR/attachments, served by this server; s3://BUCKET/PREFIX: S3-compatible storage.
    storage_url: Annotated[str | None, AfterValidator(_storage_url)] = Field(
        None, description="s3://BUCKET/PREFIX or file:///PATH"
    )
    s3_endpoint_url: Annotated[str | None, AfterValidator(_optional_http_url)] = Field(
        None, description="an http:// or https:// URL"
    )
    s3_region: str = Field("us-east-1", min_length=1, max_length=64, description="a region name")
    s3_access_key_id: str | None = Field(None, min_length=1, description="an access key id")
    s3_secret_access_key: str | None = Field(None, min_length=1, description="a secret")
    # Path-style addressing (endpoint/bucket/key), which most S3-compatible servers need.
    s3_path_style: bool = flag(False)
    s3_timeout: float = deadline(10.0)
    # This server's origin as browsers reach it (https://chat.example.com), for absolute
    # attachment URLs; unset: the directory engine's URLs are paths (/attachments/...), which
    # our pages and the widget's iframe resolve against this server. Never taken from a
    # request's Host header: anyone can send one.
    public_url: Annotated[str | None, AfterValidator(_optional_http_url)] = Field(
        None, description="an http:// or https:// URL"
    )
    # One file's size (Chatwoot's MAXIMUM_FILE_UPLOAD_SIZE, 40 MB); at most 15 per message.
    attachment_max_bytes: int = between(40 * 1024 * 1024, 1024, 1 << 30, " bytes")
    # Seconds a file's signed URL stays valid (S3 allows at most 7 days).
    attachment_url_ttl: int = between(86400, 60, 604800, " seconds")
    # Images larger than this many pixels are refused (decompression bombs).
    attachment_max_pixels: int = between(50_000_000, 10_000, 500_000_000)
    # Seconds an upload's whole body may take to arrive.
    upload_timeout: float = deadline(300.0)
    # Thumbnails made at once (each in a thread: CPU and memory).
    thumbnail_workers: int = between(2, 1, 64)
    # Transcript mails (server/mail/): the SMTP server (unset: transcripts are not sent),
    # STARTTLS on smtp:// (auto: when the server offers it), the sender address, seconds one
    # mail may take, and mails waiting to be sent per process (past it a request gets 503).
    smtp_url: Annotated[str | None, AfterValidator(_smtp_url)] = Field(
        None, description="smtp://[USER:PASSWORD@]HOST[:PORT] or smtps://..."
    )
    smtp_starttls: Annotated[Literal["auto", "on", "off"], BeforeValidator(_lower)] = Field(
        "auto", description="one of auto, on, off"
    )
    mail_from: Annotated[str | None, AfterValidator(_mail_from)] = Field(
        None, description="a plain email address"
    )
    smtp_timeout: float = deadline(10.0)
    mail_queue_size: int = between(1000, 1, 100_000)
    # A mail that failed for a reason that may pass is tried again after SMTP_RETRY_AFTER
    # seconds, doubling each time, SMTP_ATTEMPTS tries in all.
    smtp_retry_after: float = between(60.0, 0.05, 3600, " seconds")
    smtp_attempts: int = between(4, 1, 20)
    # LIMIT_*: what visitors and sockets may create or cost (server/ratelimit/rules.py); the
    # `rate_limits` property gathers them.
    limit_contacts_per_address: RateSetting = _DEFAULT_LIMITS.contacts_per_address
    limit_conversations_per_contact: RateSetting = _DEFAULT_LIMITS.conversations_per_contact
    limit_voice_urls_per_visitor: RateSetting = _DEFAULT_LIMITS.voice_urls_per_visitor
    limit_voice_urls_per_inbox: RateSetting = _DEFAULT_LIMITS.voice_urls_per_inbox
    limit_voice_polls_per_visitor: RateSetting = _DEFAULT_LIMITS.voice_polls_per_visitor
    limit_voice_calls_per_visitor: RateSetting = _DEFAULT_LIMITS.voice_calls_per_visitor
    limit_searches_per_agent: RateSetting = _DEFAULT_LIMITS.searches_per_agent
    limit_typing_per_sender: RateSetting = _DEFAULT_LIMITS.typing_per_sender
    limit_widget_updates_per_contact: RateSetting = _DEFAULT_LIMITS.widget_updates_per_contact
    limit_presence_per_socket: RateSetting = _DEFAULT_LIMITS.presence_per_socket
    limit_failed_subscribes_per_socket: RateSetting = _DEFAULT_LIMITS.failed_subscribes_per_socket
    limit_history_per_socket: RateSetting = _DEFAULT_LIMITS.history_per_socket
    limit_transcripts_per_conversation: RateSetting = _DEFAULT_LIMITS.transcripts_per_conversation
    limit_widget_events_per_contact: RateSetting = _DEFAULT_LIMITS.widget_events_per_contact

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_other_settings(cls, data: Any) -> Any:
        """The defaults that depend on another setting, from what was given."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("database_url") is None:
            data_dir = Path(data.get("data_dir") or "data")
            data["database_url"] = f"sqlite+aiosqlite:///{data_dir / 'chat.db'}"
        sqlite = isinstance(data["database_url"], str) and data["database_url"].startswith("sqlite")
        for name in ("seed_demo", "auto_migrate"):
            if data.get(name) is None:
                data[name] = sqlite
        if data.get("run_relay") is None:
            data["run_relay"] = not data.get("redis_url")
        return data

    @model_validator(mode="after")
    def _mail_needs_a_sender(self) -> Settings:
        if self.smtp_url and not self.mail_from:
            raise ValueError("MAIL_FROM must be set when SMTP_URL is (the transcripts' sender)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Values passed in code (tests) over the environment; no .env file or secrets
        # directory is read behind the operator's back.
        return init_settings, _Environ(settings_cls)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def rate_limits(self) -> RateLimits:
        return RateLimits(
            **{f.name: getattr(self, f"limit_{f.name}") for f in dataclass_fields(RateLimits)}
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings of `env` (os.environ by default), with `overrides` (field names and
        Python values: tests) on top, every one validated. Raises SettingsError naming every
        problem at once."""
        limits = overrides.pop("rate_limits", None)
        if limits is not None:
            for f in dataclass_fields(RateLimits):
                overrides[f"limit_{f.name}"] = getattr(limits, f.name)
        token = _ENVIRON.set(dict(os.environ if env is None else env))
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None
        finally:
            _ENVIRON.reset(token)
        if settings.secret_key_base is None:
            # After validation: nothing is written for settings that cannot run.
            secret = _secret_key_base(settings.data_dir)
            settings = settings.model_copy(update={"secret_key_base": secret})
        return settings


def variable(field: str) -> str:
    """The environment variable of a field (or of a validation alias)."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return field.upper()


def describe(exc: ValidationError) -> list[str]:
    """One clause per bad setting: `NAME must be ..., got '...'`."""
    by_alias = {
        info.validation_alias: name
        for name, info in Settings.model_fields.items()
        if isinstance(info.validation_alias, str)
    }
    problems = []
    seen = set()
    for error in exc.errors(include_url=False):
        loc = str(error["loc"][0]) if error["loc"] else ""
        field = by_alias.get(loc, loc)
        if field in seen:  # a union type reports each of its branches: one is enough
            continue
        seen.add(field)
        info = Settings.model_fields.get(field)
        name = variable(field)
        if error["type"] == "value_error":  # our own parsers say what they need
            message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
            problems.append(f"{name} {message}".strip())  # no name: a check across settings
            continue
        rule = info.description if info is not None and info.description else error["msg"]
        if field in SECRETS:
            problems.append(f"{name} must be {rule}")
        else:
            problems.append(f"{name} must be {rule}, got {_shown(error.get('input'))}")
    return problems


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


__all__ = ["FIXED", "LOG_LEVELS", "Settings", "SettingsError", "env_name", "variable"]
