"""Twilio's REST API through twilio's own ``Client`` (``calls.create_async``, ``messages.create_async``), over
httpx. ``SWITCHBOARD_TWILIO_API_URL`` sends the requests to another base URL (a local server in tests, an
offline demo); the paths and the signed basic auth stay Twilio's."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from hub.config import Settings
from hub.messages import DeliveryError

log = logging.getLogger(__name__)
TIMEOUT = 10.0


class HttpxClient(AsyncHttpClient):
    """twilio's asynchronous HTTP client interface over httpx, optionally aimed at another base URL."""

    def __init__(self, base_url: str | None = None, *, timeout: float = TIMEOUT) -> None:
        super().__init__(logger=log, is_async=True, timeout=timeout)
        self.base_url = base_url.rstrip("/") if base_url else None
        self._client = httpx.AsyncClient(timeout=timeout)

    def _aim(self, url: str) -> str:
        if self.base_url is None:
            return url
        parts = urlsplit(url)
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    async def request(  # type: ignore[override]
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - twilio's interface
        allow_redirects: bool = False,
    ) -> Response:
        answer = await self._client.request(
            method,
            self._aim(uri),
            params=params,  # type: ignore[arg-type]
            data=data,  # type: ignore[arg-type]
            headers=headers,
            auth=auth,
            timeout=timeout or self.timeout,
            follow_redirects=allow_redirects,
        )
        return Response(answer.status_code, answer.text, answer.headers)

    async def aclose(self) -> None:
        await self._client.aclose()


class Rest:
    """The hub's Twilio account (None of it when no account SID and token are configured)."""

    def __init__(self, settings: Settings, http_client: AsyncHttpClient | None = None) -> None:
        self.settings = settings
        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
        self.configured = bool(settings.twilio_account_sid and token)
        self._http = http_client or HttpxClient(settings.twilio_api_url)
        self.client: Client | None = (
            Client(settings.twilio_account_sid, token, http_client=self._http) if self.configured else None
        )

    async def call(self, *, to: str, from_: str, twiml: str, status_callback: str | None = None) -> str:
        """Place a call running ``twiml``; answers its CallSid. With ``status_callback``, Twilio reports there
        when the call is answered and when it ends (its CallStatus: in-progress, then completed, busy,
        no-answer, failed or canceled)."""
        if self.client is None:
            raise DeliveryError(
                "Twilio is not configured (SWITCHBOARD_TWILIO_ACCOUNT_SID, _AUTH_TOKEN)", permanent=True
            )
        extra: dict[str, Any] = {}
        if status_callback is not None:
            extra = {
                "status_callback": status_callback,
                "status_callback_method": "POST",
                "status_callback_event": ["answered", "completed"],
            }
        call = await self.client.calls.create_async(to=to, from_=from_, twiml=twiml, **extra)
        return str(call.sid)

    async def message(self, *, to: str, from_: str, body: str | None, status_callback: str, **extra: Any) -> str:
        """Send an SMS or WhatsApp message; answers its MessageSid. A refusal of the API (4xx) is permanent,
        anything else (5xx, the network) is retried by the outbox."""
        if self.client is None:
            raise DeliveryError(
                "Twilio is not configured (SWITCHBOARD_TWILIO_ACCOUNT_SID, _AUTH_TOKEN)", permanent=True
            )
        try:
            fields = {"body": body} if body is not None else {}
            message = await self.client.messages.create_async(
                to=to, from_=from_, status_callback=status_callback, **fields, **extra
            )
        except TwilioRestException as exc:
            raise DeliveryError(f"Twilio answered {exc.status}: {exc.msg}", permanent=400 <= exc.status < 500) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Twilio API unreachable: {type(exc).__name__}") from None
        return str(message.sid)

    async def aclose(self) -> None:
        if isinstance(self._http, HttpxClient):
            await self._http.aclose()
