"""Sending transcripts: the request puts a job on a bounded queue and answers at once (as
Chatwoot's `deliver_later`); one worker task per process reads the conversation and sends
it through SMTP (aiosmtplib), each attempt within SMTP_TIMEOUT.

SMTP is optional: without SMTP_URL there is no worker and nothing is queued. It is not a
readiness check either: a mail server that is down must not take the chat out of a load
balancer's rotation. Operators see it in the metrics (chat_transcript_mails{result}) and in
one WARNING line per failed mail that says what to check.

A mail that fails for a reason that may pass (the server is unreachable or busy, a 4xx
answer, the database did not answer) is tried again after SMTP_RETRY_AFTER seconds,
doubling, SMTP_ATTEMPTS tries in all; a permanent refusal (5xx) is not retried.

The queue lives in the process: jobs still queued or waiting for a retry when it stops
(after SHUTDOWN_GRACE) are lost, and counted as dropped."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

import aiosmtplib

from server.lifecycle import cancel
from server.mail.transcript import Undeliverable, build
from server.store import transcripts
from server.store.db import Database
from server.store.unavailable import DatabaseUnavailable

log = logging.getLogger(__name__)

# Messages of one conversation in a transcript at most (the newest; older ones are named
# as left out).
MAX_MESSAGES = 1000


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool  # smtps://: TLS from the first byte


def parse_smtp_url(raw: str) -> SmtpServer:
    """smtp://[user:pass@]host[:port] (port 25 by default) or smtps://... (port 465). A
    ValueError names what is wrong, never the password."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must be smtp://[USER:PASSWORD@]HOST[:PORT] or smtps://...")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must have no path, query or fragment")
    tls = parts.scheme == "smtps"
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        use_tls=tls,
    )


@dataclass(frozen=True, slots=True)
class TranscriptJob:
    conversation_id: int
    contact_inbox_id: int  # the conversation must still be this visitor's when it is read
    to: str
    attempt: int = 1


def may_pass(exc: BaseException) -> bool:
    """A failure worth another try later: no connection, a timeout, a dropped connection
    (aiosmtplib's are OSErrors), a 4xx answer (a temporary refusal, greylisting), a database
    that did not answer. A 5xx answer or a bad address would fail the same way again."""
    if isinstance(exc, (OSError, DatabaseUnavailable)):
        return True
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 400 <= exc.code < 500
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(400 <= r.code < 500 for r in exc.recipients)
    return False


class Mailer:
    def __init__(
        self,
        db: Database,
        server: SmtpServer,
        *,
        mail_from: str,
        starttls: bool | None,
        timeout: float,
        queue_size: int,
        retry_after: float = 60.0,
        attempts: int = 4,
    ) -> None:
        self.db = db
        self.server = server
        self.mail_from = mail_from
        self.starttls = starttls  # None: when the server offers it
        self.timeout = timeout
        self.queue: asyncio.Queue[TranscriptJob] = asyncio.Queue(queue_size)
        self.retry_after = retry_after
        self.attempts = attempts
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0  # refused with a full queue, or still queued (or waiting) at stop
        self._task: asyncio.Task[None] | None = None
        # mails waiting for their next try (at most as many as the queue holds)
        self._waiting: set[asyncio.TimerHandle] = set()

    def submit(self, job: TranscriptJob) -> bool:
        """Queue `job`; False (and nothing queued) when the queue is full or stopped."""
        if self._task is None:
            self.dropped += 1
            return False
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mailer")
        log.info(
            "transcript mails go through SMTP at %s:%d (%s)",
            self.server.host,
            self.server.port,
            "TLS"
            if self.server.use_tls
            else {None: "STARTTLS when offered", True: "STARTTLS"}.get(self.starttls, "no TLS"),
        )

    async def stop(self, grace: float) -> None:
        """Let the queued mails go out for up to `grace` seconds, then stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(grace):
                await self.queue.join()
        except TimeoutError:
            pass
        task, self._task = self._task, None
        await cancel(task)
        for handle in self._waiting:
            handle.cancel()
        self.dropped += self.queue.qsize() + len(self._waiting)
        self._waiting.clear()

    async def _run(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.deliver(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if may_pass(exc) and job.attempt < self.attempts:
                    self._try_again(job, exc)
                else:
                    self.failed += 1
                    log.warning("%s", _failure(job, exc))
            finally:
                self.queue.task_done()

    def _try_again(self, job: TranscriptJob, exc: BaseException) -> None:
        if len(self._waiting) >= self.queue.maxsize:
            self.dropped += 1
            log.warning("%s; not tried again: too many mails wait for a retry", _failure(job, exc))
            return
        delay = self.retry_after * 2 ** (job.attempt - 1)
        log.warning(
            "%s; trying again in %gs (attempt %d of %d)",
            _failure(job, exc),
            delay,
            job.attempt + 1,
            self.attempts,
        )
        self.retried += 1
        handle: asyncio.TimerHandle

        def requeue() -> None:
            self._waiting.discard(handle)
            try:
                self.queue.put_nowait(replace(job, attempt=job.attempt + 1))
            except asyncio.QueueFull:
                self.dropped += 1

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._waiting.add(handle)

    async def deliver(self, job: TranscriptJob) -> None:
        found = await self.db.read(
            transcripts.of_conversation, job.conversation_id, job.contact_inbox_id, MAX_MESSAGES
        )
        if found is None:  # the contact was merged away meanwhile: nothing of theirs to send
            log.info("transcript of conversation %d: no longer the visitor's", job.conversation_id)
            return
        message = build(found, to=job.to, mail_from=self.mail_from)
        await aiosmtplib.send(
            message,
            hostname=self.server.host,
            port=self.server.port,
            username=self.server.username,
            password=self.server.password,
            use_tls=self.server.use_tls,
            start_tls=False if self.server.use_tls else self.starttls,
            timeout=self.timeout,
        )
        self.sent += 1


def _failure(job: TranscriptJob, exc: BaseException) -> str:
    """The log line of a mail that failed: what failed, and what to check."""
    what = f"transcript mail for conversation {job.conversation_id} not sent"
    if isinstance(exc, Undeliverable):
        return (
            f"{what}: the contact's email address cannot be put in a mail safely ({exc});"
            " correct the contact's email"
        )
    if isinstance(exc, DatabaseUnavailable):
        return f"{what}: the database did not answer ({exc}); see the database's own errors"
    return (
        f"{what}: {type(exc).__name__}: {str(exc)[:300]}; check SMTP_URL (host, port,"
        " credentials), SMTP_STARTTLS, and that the SMTP server accepts MAIL_FROM as a sender"
    )
