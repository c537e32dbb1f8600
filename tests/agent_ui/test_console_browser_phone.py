"""The console's browser phone in Chromium: Twilio's Voice JavaScript SDK comes from the hub (no request leaves
127.0.0.1) and a ``Twilio.Device`` is created with the token the hub signed for the agent; without Twilio
credentials the console says the browser phone is unavailable and loads no SDK.

Registering with Twilio (a websocket to Twilio's signalling) and a real call cannot happen offline: the agent
stays offline here, so the Device is created but never registers."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Request, Route, WebSocket, expect
from pydantic import SecretStr

from hub.config import Settings
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page
from tests.conftest import LiveServer, make_agent

SDK = "/static/vendor/twilio-voice/twilio.min.js"
# Records each Twilio.Device the page creates, with its token and options, as the SDK defines the class.
RECORD_DEVICES = """
window.__devices = [];
let twilio;
Object.defineProperty(window, "Twilio", {
  configurable: true,
  get() { return twilio; },
  set(value) {
    twilio = value;
    let Device;
    Object.defineProperty(value, "Device", {
      configurable: true,
      get() { return Device; },
      set(Real) {
        Device = class extends Real {
          constructor(token, options) {
            super(token, options);
            window.__devices.push({ token, sounds: Object.values((options || {}).sounds || {}) });
          }
        };
      },
    });
  },
});
"""


def _serve(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def phone_live(settings: Settings) -> Iterator[LiveServer]:
    """A hub with a Twilio account and an API key for the browser phone (never reached: nothing dials)."""
    yield from _serve(
        settings.model_copy(
            update={
                "twilio_account_sid": "AC" + "a" * 32,
                "twilio_auth_token": SecretStr("test-twilio-token"),
                "twilio_api_key_sid": "SK" + "b" * 32,
                "twilio_api_key_secret": SecretStr("browser-phone-key-secret-0123456789"),
            }
        )
    )


@pytest.fixture
def plain_live(settings: Settings) -> Iterator[LiveServer]:
    """A hub with no Twilio credentials (the demo's case)."""
    yield from _serve(settings)


class Traffic:
    """Every request and websocket of a browser context; anything not for 127.0.0.1 is refused and kept."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.away: list[str] = []

    async def route(self, route: Route, request: Request) -> None:
        self.urls.append(request.url)
        if urlsplit(request.url).hostname != "127.0.0.1":
            self.away.append(request.url)
            await route.abort()
        else:
            await route.continue_()

    def socket(self, ws: WebSocket) -> None:
        self.urls.append(ws.url)
        if urlsplit(ws.url).hostname != "127.0.0.1":
            self.away.append(ws.url)


async def test_the_console_loads_the_sdk_from_the_hub_and_creates_a_device_with_its_token(
    rt: Runtime, phone_live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Bob (no phone of his own) answers in the browser: the console fetches the SDK from the hub, gets a token
    from the hub and creates one Device with exactly that token and the hub's own sounds; it tells him the
    phone takes no calls until he is available. Nothing the page asks for leaves 127.0.0.1."""
    await make_agent(rt, "bob")
    context, page = await new_page(browser, dialogs)
    traffic = Traffic()
    await context.route("**/*", traffic.route)
    page.on("websocket", traffic.socket)
    await context.add_init_script(RECORD_DEVICES)
    async with page.expect_response(lambda r: r.url.endswith("/api/twilio/phone/token") and r.ok) as answer:
        await agent_login(page, phone_live.url, "bob")
    token = (await (await answer.value).json())["token"]
    await expect(page.locator("#phone-status")).to_have_text(
        "Browser phone: not receiving calls (set yourself available)"
    )
    await expect(page.get_by_label("Where the calls you accept ring")).to_have_value("browser")
    devices = await page.evaluate("window.__devices")
    assert len(devices) == 1 and devices[0]["token"] == token
    assert devices[0]["sounds"] and all(s.startswith("/static/console/sounds/") for s in devices[0]["sounds"])
    assert f"{phone_live.url}{SDK}" in traffic.urls
    assert traffic.away == [], traffic.away
    await context.close()


async def test_without_twilio_credentials_the_console_says_the_browser_phone_is_unavailable(
    rt: Runtime, plain_live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """No Twilio credentials: the phone control says so (with the settings it needs in its title) and the SDK
    is not even loaded."""
    await make_agent(rt, "bob")
    context, page = await new_page(browser, dialogs)
    traffic = Traffic()
    await context.route("**/*", traffic.route)
    await agent_login(page, plain_live.url, "bob")
    status = page.locator("#phone-status")
    await expect(status).to_have_text("Browser phone unavailable without Twilio credentials")
    assert "_API_KEY_SID" in (await status.get_attribute("title") or "")
    assert not any(u.endswith(SDK) for u in traffic.urls)
    assert traffic.away == [], traffic.away
    await context.close()
