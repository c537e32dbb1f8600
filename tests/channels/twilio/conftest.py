from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hub.config import MessageTemplate, Settings, TwilioNumberSettings
from tests.channels.twilio.helpers import ACCOUNT, TOKEN, FakeTwilioApi
from tests.conftest import LiveServer


@pytest.fixture
def api() -> Iterator[FakeTwilioApi]:
    fake = FakeTwilioApi().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def twilio_settings(settings: Settings, api: FakeTwilioApi, tmp_path: Path) -> Settings:
    """The test settings with a Twilio account (token ``TOKEN``) whose REST API is the local fake, one number
    answered by the demo flow, and an agent's own phone; files stored under the test's own directory."""
    return settings.model_copy(
        update={
            "attachment_dir": tmp_path / "attachments",
            "twilio_account_sid": ACCOUNT,
            "twilio_auth_token": __import__("pydantic").SecretStr(TOKEN),
            "twilio_api_url": api.url,
            "twilio_numbers": [TwilioNumberSettings(number="+14155550199", flow="demo")],
            "twilio_agent_numbers": {"alice": "+14155550777", "sup": "+14155550888"},
            "whatsapp_templates": [
                MessageTemplate(
                    name="order_update",
                    content_sid="HX" + "c" * 32,
                    body="Hi {{1}}, there is news about your order {{2}}.",
                )
            ],
        }
    )


@pytest.fixture
def server(twilio_settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(twilio_settings).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as c:
        yield c
