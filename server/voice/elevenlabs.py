"""The ElevenLabs client we use: the official SDK, imported on first use (it is heavy and most
processes never need it), over one shared HTTP client with an explicit timeout and no
retries (a retry storm would only hold the visitor's request longer).

The timeout bounds the whole exchange: httpx's own timeouts bound each connect, write and
read, so an upstream that sends a byte just inside the read timeout could hold the
visitor's request (and one of our sockets) for as long as it liked."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Transcript:
    """What we use of an ElevenLabs conversation: its agent, status ("in-progress",
    "processing", "done", "failed"), the turns with words in them as (role, message) in
    order (role "user" or "agent", as ElevenLabs says), and the dynamic variables the widget
    started it with (chatwoot_conversation_id)."""

    conversation_id: str
    agent_id: str
    status: str
    turns: tuple[tuple[int, str, str], ...]  # (position in ElevenLabs' list, role, message)
    dynamic_variables: dict[str, Any]
    # position -> when the turn was said (epoch seconds): the call's start_time_unix_secs
    # plus the turn's time_in_call_secs, for the turns ElevenLabs dates
    said_at: dict[int, float] = field(default_factory=dict)


def transcript_from(data: dict[str, Any]) -> Transcript:
    """A Transcript from ElevenLabs' conversation JSON (the GET answer, or a post-call
    webhook's `data`). Turns without words (tool calls, silence) are skipped but keep their
    position, so a turn's position never changes as the transcript grows."""
    turns = []
    said_at = {}
    metadata = data.get("metadata")
    start = _number(metadata.get("start_time_unix_secs")) if isinstance(metadata, dict) else None
    for index, turn in enumerate(data.get("transcript") or []):
        if not isinstance(turn, dict):
            continue
        role, message = turn.get("role"), turn.get("message")
        if role in ("user", "agent") and isinstance(message, str) and message.strip():
            turns.append((index, role, message.strip()))
            offset = _number(turn.get("time_in_call_secs"))
            if start is not None and offset is not None:
                said_at[index] = start + offset
    client_data = data.get("conversation_initiation_client_data") or {}
    variables = client_data.get("dynamic_variables") if isinstance(client_data, dict) else None
    return Transcript(
        conversation_id=str(data.get("conversation_id") or ""),
        agent_id=str(data.get("agent_id") or ""),
        status=str(data.get("status") or ""),
        turns=tuple(turns),
        dynamic_variables=variables if isinstance(variables, dict) else {},
        said_at=said_at,
    )


def _number(value: Any) -> float | None:
    """A finite, non-negative number of seconds from ElevenLabs' JSON, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < 1e11 else None


class WebhookSignatureError(Exception):
    """A post-call webhook whose signature is missing, stale or wrong."""


class ElevenLabsError(Exception):
    """ElevenLabs failed; the message is safe to show (it never holds the API key)."""


class ElevenLabs:
    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http: Any = None

    def _client(self, api_key: str) -> Any:
        import httpx
        from elevenlabs.client import AsyncElevenLabs

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            # httpx logs every request at INFO; keep it quiet.
            logging.getLogger("httpx").setLevel(logging.WARNING)
        return AsyncElevenLabs(
            api_key=api_key, base_url=self.base_url, timeout=self.timeout, httpx_client=self._http
        )

    async def signed_url(self, api_key: str, agent_id: str) -> str:
        import httpx
        from elevenlabs.core.api_error import ApiError

        # The SDK imports its submodules on first attribute access: do that (seconds, once)
        # before the clock starts, so it never counts against the upstream.
        conversations = self._client(api_key).conversational_ai.conversations
        try:
            async with asyncio.timeout(self.timeout):
                response = await conversations.get_signed_url(
                    agent_id=agent_id,
                    request_options={"max_retries": 0, "timeout_in_seconds": self.timeout},  # type: ignore[typeddict-item]
                )
        except TimeoutError:
            log.warning(
                "ElevenLabs get-signed-url took longer than ELEVENLABS_TIMEOUT (%.1fs) in all;"
                " answered 502",
                self.timeout,
            )
            raise ElevenLabsError("ElevenLabs API timed out") from None
        except ApiError as exc:
            log.warning("ElevenLabs get-signed-url answered %s", exc.status_code)
            raise ElevenLabsError(f"ElevenLabs API responded {exc.status_code}") from None
        except httpx.TimeoutException:
            log.warning("ElevenLabs get-signed-url timed out after %.1fs", self.timeout)
            raise ElevenLabsError("ElevenLabs API timed out") from None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("ElevenLabs get-signed-url failed: %s", type(exc).__name__)
            raise ElevenLabsError("ElevenLabs API could not be reached") from None
        except Exception as exc:  # the SDK's own parsing and validation errors
            log.warning("ElevenLabs get-signed-url gave an unusable answer: %s", type(exc).__name__)
            raise ElevenLabsError("ElevenLabs API returned an unexpected answer") from None
        url = getattr(response, "signed_url", None)
        if not isinstance(url, str) or not url:
            raise ElevenLabsError("ElevenLabs API returned no signed_url")
        return url

    async def conversation(self, api_key: str, conversation_id: str) -> Transcript:
        """GET /v1/convai/conversations/{id} through the SDK: the call's transcript as
        ElevenLabs keeps it (the turns a browser may have missed)."""
        import httpx
        from elevenlabs.core.api_error import ApiError

        conversations = self._client(api_key).conversational_ai.conversations
        what = "ElevenLabs get-conversation"
        try:
            async with asyncio.timeout(self.timeout):
                response = await conversations.get(
                    conversation_id,
                    request_options={"max_retries": 0, "timeout_in_seconds": self.timeout},  # type: ignore[typeddict-item]
                )
        except TimeoutError:
            log.warning("%s took longer than ELEVENLABS_TIMEOUT (%.1fs)", what, self.timeout)
            raise ElevenLabsError("ElevenLabs API timed out") from None
        except ApiError as exc:
            log.warning("%s answered %s", what, exc.status_code)
            raise ElevenLabsError(f"ElevenLabs API responded {exc.status_code}") from None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("%s failed: %s", what, type(exc).__name__)
            raise ElevenLabsError("ElevenLabs API could not be reached") from None
        except Exception as exc:  # the SDK's own parsing and validation errors
            log.warning("%s gave an unusable answer: %s", what, type(exc).__name__)
            raise ElevenLabsError("ElevenLabs API returned an unexpected answer") from None
        return transcript_from(response.dict())

    def verify_webhook(self, raw_body: str, signature: str, secret: str) -> dict[str, Any]:
        """The webhook's event, after the SDK's check of its `ElevenLabs-Signature` (an
        HMAC-SHA256 of "<timestamp>.<body>" with the secret, the timestamp under 30 minutes
        old); WebhookSignatureError otherwise."""
        from elevenlabs.errors import BadRequestError

        webhooks = self._client("unused").webhooks
        try:
            event = webhooks.construct_event(raw_body, signature, secret)
        except BadRequestError:
            raise WebhookSignatureError() from None
        except ValueError:  # a timestamp that is not a number, a body that is not JSON
            raise WebhookSignatureError() from None
        if not isinstance(event, dict):
            raise WebhookSignatureError()
        return event

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
