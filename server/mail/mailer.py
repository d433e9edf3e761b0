"""Sending transcripts: the request puts a job on a bounded queue and answers at once (as
Chatwoot's `deliver_later`); one worker task per process reads the conversation and sends
it through SMTP (aiosmtplib), each attempt within SMTP_TIMEOUT.

SMTP is optional: without SMTP_URL there is no worker and nothing is queued. It is not a
readiness check either: a mail server that is down must not take the chat out of a load
balancer's rotation. Operators see it in the metrics (chat_transcript_mails{result}) and in
one WARNING line per failed mail that says what to check.

The queue lives in the process: jobs still queued when it stops (after SHUTDOWN_GRACE) are
lost, and counted as dropped."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
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
    ) -> None:
        self.db = db
        self.server = server
        self.mail_from = mail_from
        self.starttls = starttls  # None: when the server offers it
        self.timeout = timeout
        self.queue: asyncio.Queue[TranscriptJob] = asyncio.Queue(queue_size)
        self.sent = 0
        self.failed = 0
        self.dropped = 0  # refused with a full queue, or still queued at stop
        self._task: asyncio.Task[None] | None = None

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
        self.dropped += self.queue.qsize()

    async def _run(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.deliver(job)
            except asyncio.CancelledError:
                raise
            except Undeliverable as exc:
                self.failed += 1
                log.warning(
                    "transcript mail for conversation %d not sent: the contact's email address "
                    "cannot be put in a mail safely (%s); correct the contact's email",
                    job.conversation_id,
                    exc,
                )
            except DatabaseUnavailable as exc:
                self.failed += 1
                log.warning(
                    "transcript mail for conversation %d not sent: the database did not answer "
                    "(%s); see the database's own errors",
                    job.conversation_id,
                    exc,
                )
            except Exception as exc:
                self.failed += 1
                log.warning(
                    "transcript mail for conversation %d not sent: %s: %s; check SMTP_URL "
                    "(host, port, credentials), SMTP_STARTTLS, and that the SMTP server "
                    "accepts MAIL_FROM as a sender",
                    job.conversation_id,
                    type(exc).__name__,
                    str(exc)[:300],
                )
            finally:
                self.queue.task_done()

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
