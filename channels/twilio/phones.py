"""Where an agent answers the calls they accept, and the browser phone's access tokens.

An accepted call is connected by placing a call (Twilio REST) into the caller's conference room: to the agent's
own number (``SWITCHBOARD_TWILIO_AGENT_NUMBERS``), or to their browser — the console's ``Twilio.Device`` of
Twilio's Voice JavaScript SDK (served from the hub, ``agent_ui/static/vendor/twilio-voice``), registered as
``client:agent-<id>`` with an access token from ``token``. Each agent picks one (``twilio_agent_phones``); with
no choice stored, their number when they have one, else the browser when the hub can sign tokens. With neither
(the demo: no Twilio account), the call is answered in the console as soon as they accept.

A browser token needs the account SID, an API key (``SWITCHBOARD_TWILIO_API_KEY_SID``, ``_SECRET``) and the
auth token the hub places calls with; it grants incoming calls only (the browser never dials out, so no TwiML
app is needed).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import insert, select, update
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from channels.twilio.models import TwilioAgentPhone
from channels.twilio.rest import Rest
from hub.config import Settings
from hub.db import utcnow
from hub.errors import InvalidInput
from hub.runtime import Runtime

PHONES = TwilioAgentPhone.__table__  # type: ignore[attr-defined]
AnswerOn = Literal["browser", "phone"]
NO_BROWSER = (
    "The browser phone is unavailable: this server has no Twilio credentials for it "
    "(SWITCHBOARD_TWILIO_ACCOUNT_SID, _AUTH_TOKEN, _API_KEY_SID and _API_KEY_SECRET)."
)


def identity(agent_id: int) -> str:
    """The agent's browser phone, as Twilio knows it (``client:<identity>``)."""
    return f"agent-{agent_id}"


class Phones:
    """The agents' phones of one hub process (see the module docstring)."""

    def __init__(self, rt: Runtime, settings: Settings, rest: Rest) -> None:
        self.rt = rt
        self.settings = settings
        self.rest = rest

    @property
    def browser_ready(self) -> bool:
        s = self.settings
        return self.rest.configured and bool(s.twilio_api_key_sid and s.twilio_api_key_secret)

    async def _number(self, agent_id: int) -> str | None:
        if not self.settings.twilio_agent_numbers:  # no agent has one: nothing to read (connecting every call asks)
            return None
        record = await self.rt.ports.agents.principal(agent_id)
        return self.settings.twilio_agent_numbers.get(record.principal.username) if record else None

    async def _chosen(self, agent_id: int) -> str | None:
        async with self.rt.read() as conn:
            row = (await conn.execute(select(PHONES.c.answer_on).where(PHONES.c.agent_id == agent_id))).first()
        return row[0] if row else None

    async def address(self, agent_id: int) -> str | None:
        """What a call to the agent dials: ``client:agent-<id>`` (their browser), their number, or None (the
        call is answered in the console alone)."""
        number = await self._number(agent_id)
        if not self.browser_ready:
            return number
        # The browser when they chose it, or have no number of their own (their choice is read only then).
        if number is None or await self._chosen(agent_id) == "browser":
            return f"client:{identity(agent_id)}"
        return number

    async def describe(self, agent_id: int) -> dict[str, Any]:
        """The agent's choice as the console shows it, and whether the browser phone can work here."""
        number, chosen = await self._number(agent_id), await self._chosen(agent_id)
        where = await self.address(agent_id)
        answer_on = "console" if where is None else "browser" if where.startswith("client:") else "phone"
        return {
            "answer_on": answer_on,
            "chosen": chosen,
            "own_number": number is not None,
            "browser_available": self.browser_ready,
            "browser_unavailable_reason": None if self.browser_ready else NO_BROWSER,
            "identity": identity(agent_id),
        }

    async def choose(self, agent_id: int, answer_on: AnswerOn) -> dict[str, Any]:
        """The agent answers their calls in the browser or on their own phone from now on."""
        if answer_on == "browser" and not self.browser_ready:
            raise InvalidInput(NO_BROWSER, code="browser_phone_unavailable", loc=("body", "answer_on"))
        if answer_on == "phone" and await self._number(agent_id) is None:
            raise InvalidInput(
                "you have no phone of your own on this server (SWITCHBOARD_TWILIO_AGENT_NUMBERS)",
                code="no_agent_phone",
                loc=("body", "answer_on"),
            )
        now = utcnow()
        async with self.rt.write() as tx:
            done = await tx.conn.execute(
                update(PHONES).where(PHONES.c.agent_id == agent_id).values(answer_on=answer_on, updated_at=now)
            )
            if not done.rowcount:
                await tx.conn.execute(insert(PHONES).values(agent_id=agent_id, answer_on=answer_on, updated_at=now))
        return await self.describe(agent_id)

    def token(self, agent_id: int) -> dict[str, Any]:
        """An access token for the agent's browser phone: incoming calls to ``client:agent-<id>`` only."""
        s = self.settings
        if not self.browser_ready or s.twilio_api_key_secret is None:
            raise InvalidInput(NO_BROWSER, code="browser_phone_unavailable")
        ttl = s.twilio_browser_token_seconds
        token = AccessToken(
            s.twilio_account_sid,
            s.twilio_api_key_sid,
            s.twilio_api_key_secret.get_secret_value(),
            identity=identity(agent_id),
            ttl=ttl,
        )
        token.add_grant(VoiceGrant(incoming_allow=True))
        return {"token": token.to_jwt(), "identity": identity(agent_id), "expires_in": ttl}
