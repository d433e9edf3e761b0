"""A real SMTP server on 127.0.0.1 (aiosmtpd), in the test's own event loop: what a test of
outgoing mail sends to and reads back from. Mail is a service we cannot reach here; this is
the local stand-in, speaking the real protocol (EHLO, AUTH, MAIL, RCPT, DATA)."""

from __future__ import annotations

import asyncio
import time
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class Mailbox:
    """What the server received: each envelope, and the logins it accepted."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.login = login
        self.logins: list[tuple[str, str]] = []
        self.envelopes: list[Envelope] = []
        self.hold: asyncio.Event | None = None  # set: DATA waits for it (a slow server)
        # replies DATA gives first, one per mail, instead of accepting it ("451 ...": busy)
        self.refusals: list[str] = []
        self._new = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.hold is not None:
            await self.hold.wait()
        if self.refusals:
            return self.refusals.pop(0)
        self.envelopes.append(envelope)
        self._new.set()
        return "250 Message accepted"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False)
        got = (data.login.decode(), data.password.decode())
        if self.login is None or got != self.login:
            return AuthResult(success=False)
        self.logins.append(got)
        return AuthResult(success=True)

    async def start(self) -> Mailbox:
        def protocol() -> SMTP:
            return SMTP(
                self,
                hostname="mail.test",
                auth_required=self.login is not None,
                auth_require_tls=False,  # loopback only; TLS is not what these tests test
                authenticator=self._authenticate,
            )

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The first `count` mails, once they have arrived (AssertionError past `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self.envelopes) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.envelopes)} mails within {timeout}s, not {count}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except TimeoutError:
                pass
        return [self.parsed(i) for i in range(count)]

    def parsed(self, i: int) -> EmailMessage:
        content = self.envelopes[i].content
        assert isinstance(content, bytes)
        return message_from_bytes(content, policy=default)  # type: ignore[return-value]
