"""Which flow answers a number: the numbers configured (``SWITCHBOARD_TWILIO_NUMBERS``, then the admin API's,
stored in ``twilio_numbers``), else ``SWITCHBOARD_TWILIO_DEFAULT_FLOW``; in demo mode any number gets the demo
flow. Flows are named symbolically, a ``<name>.yaml`` file in the flows folder, and loaded through
``ivr_flows.load_flow`` (linted: a flow with errors is refused with the lint's messages, and the flow already
running stays)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import phonenumbers

import ivr_flows
from hub.config import Settings
from ivr_flows.errors import FlowInvalid
from ivr_flows.loader import load_flow
from ivr_flows.schema import Flow

log = logging.getLogger(__name__)

DEMO_FLOW = "demo"
FLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def flows_dir(settings: Settings) -> Path:
    return settings.twilio_flows_dir or Path(ivr_flows.__file__).parent / "flows"


def e164(value: str, region: str) -> str | None:
    """A phone number in E.164 (a WhatsApp address's too), or None when it is none."""
    raw = value.strip()
    if raw.lower().startswith("whatsapp:"):
        raw = raw[len("whatsapp:") :]
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


class FlowBook:
    """The loaded flows by name, kept while their files do not change (looked at, every webhook asking, at most
    once per ``RECHECK_SECONDS``), and the configured numbers' flows (the numbers parsed once)."""

    RECHECK_SECONDS = 1.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: dict[str, tuple[float, Flow]] = {}
        self._checked: dict[str, float] = {}  # when each flow's file was last looked at (time.monotonic)
        region = settings.default_phone_region
        self._numbers: dict[str, str] = {}
        for entry in settings.twilio_numbers:
            number = e164(entry.number, region)
            if number is not None:
                self._numbers.setdefault(number, entry.flow)

    def names(self) -> list[str]:
        """The flows in the flows folder."""
        folder = flows_dir(self.settings)
        return sorted(
            p.name.removesuffix(".yaml")
            for p in folder.glob("*.yaml")
            if not p.name.endswith(".tests.yaml") and FLOW_NAME.match(p.name.removesuffix(".yaml"))
        )

    def path(self, name: str) -> Path | None:
        if not FLOW_NAME.match(name):
            return None
        path = flows_dir(self.settings) / f"{name}.yaml"
        return path if path.is_file() else None

    def get(self, name: str) -> Flow | None:
        """The flow ``name``, reloaded when its file changed; a file that no longer lints keeps the flow loaded
        before (logged with every error and its line); None when there is none."""
        known = self._loaded.get(name)
        now = time.monotonic()
        if known is not None and now - self._checked.get(name, 0.0) < self.RECHECK_SECONDS:
            return known[1]
        self._checked[name] = now
        path = self.path(name)
        if path is None:
            return known[1] if known else None
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return known[1] if known else None
        if known is not None and known[0] == mtime:
            return known[1]
        try:
            flow = load_flow(path)
        except FlowInvalid as exc:
            log.error(
                "flow %s refused, %s: %s", name, "the running one stays" if known else "none running", exc.message
            )
            if known is not None:
                self._loaded[name] = (mtime, known[1])
            return known[1] if known else None
        self._loaded[name] = (mtime, flow)
        return flow

    def configured(self, number: str) -> str | None:
        """The flow named for ``number`` by the settings (the admin API's numbers are looked up by the caller)."""
        return self._numbers.get(number)
