"""The channel registry: the application builds every registered channel through the ``Channel`` protocol and
refuses, before serving anything, a channel that is not one, a name the core does not know, and a name two
channels bring."""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from channels.base import ChannelContext, identity_kinds, names
from hub import app as hub_app
from hub.channels import SPECS, CapacityClass, ChannelSpec, IdentityKind
from hub.config import Settings
from hub.messages import ReplyHook, Sender
from hub.runtime import Runtime


class Fake:
    """A channel with nothing to run: only its names matter here."""

    settings_section = "fake"

    def __init__(self, specs: Sequence[ChannelSpec]) -> None:
        self.specs = specs

    def routers(self) -> Sequence[Any]:
        return ()

    def middleware(self) -> Sequence[Any]:
        return ()

    def body_limits(self) -> Mapping[str, int]:
        return {}

    @property
    def senders(self) -> Mapping[str, Sender]:
        return {}

    @property
    def reply_hooks(self) -> Mapping[str, ReplyHook]:
        return {}

    async def start(self, ctx: ChannelContext) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def seed_demo(self, rt: Runtime) -> None:
        return None


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``CHANNEL_PACKAGES`` as the test sets it."""
    packages: list[str] = []
    monkeypatch.setattr(hub_app, "CHANNEL_PACKAGES", packages)
    return packages


def package(monkeypatch: pytest.MonkeyPatch, name: str, factory: Any) -> str:
    """A fake channel package ``name`` (importable for the test's duration) whose factory is ``factory``."""
    module = types.ModuleType(name)
    module.create_channel = factory  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    return name


SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_registered_channels_are_built_with_their_names(registry: list[str]) -> None:
    """webchat and email, as registered: each brings its one name, with the identity kind the table says."""
    registry += ["channels.webchat", "channels.email"]
    built = hub_app.build_channels(SETTINGS)
    assert [names(c) for c in built] == [("webchat",), ("email",)]
    assert [identity_kinds(c) for c in built] == [{IdentityKind.WEBCHAT}, {IdentityKind.EMAIL}]


def test_a_channel_bringing_a_name_twice_or_an_undeclared_one_is_refused(
    registry: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two channels bringing ``whatsapp`` would both deliver its replies: refused at build, naming both. A name
    missing from ``hub.channels.SPECS`` (or declared otherwise there) is unknown to routing: refused too."""
    registry += [
        package(monkeypatch, "fake_twilio", lambda s: Fake([SPECS["sms"], SPECS["whatsapp"]])),
        package(monkeypatch, "fake_meta", lambda s: Fake([SPECS["whatsapp"]])),
    ]
    with pytest.raises(RuntimeError, match="'whatsapp' is brought by both fake_twilio and fake_meta"):
        hub_app.build_channels(SETTINGS)
    fax = ChannelSpec("fax", IdentityKind.PHONE, CapacityClass.EMAIL, live=False)
    registry[:] = [package(monkeypatch, "fake_fax", lambda s: Fake([fax]))]
    with pytest.raises(RuntimeError, match="brings channel 'fax', which hub.channels.SPECS does not declare"):
        hub_app.build_channels(SETTINGS)


def test_a_registry_line_naming_something_else_is_refused(registry: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A package without ``create_channel``, or whose factory builds something that is not a channel, is named
    in the error."""
    registry[:] = [package(monkeypatch, "fake_empty", None)]
    with pytest.raises(TypeError, match="not a channel factory"):
        hub_app.build_channels(SETTINGS)
    registry[:] = [package(monkeypatch, "fake_object", lambda s: object())]
    with pytest.raises(TypeError, match="object is not a channels.base.Channel: it has no specs"):
        hub_app.build_channels(SETTINGS)


def _paths(route: Any) -> list[str]:
    """The paths a top-level route of the app serves (an included router's, each of its own routes)."""
    inner = getattr(getattr(route, "original_router", None), "routes", None)
    if inner is None:
        return [str(getattr(route, "path", ""))]
    return [p for r in inner for p in _paths(r)]


def test_the_channels_webhooks_are_tried_before_the_cores_routes(settings: Settings) -> None:
    """The router tries the routes in order: the webhooks (a phone call's every step) come before the core's
    API, so that a webhook's route is found without trying the core's ~80 routes first."""
    routes = hub_app.create_app(settings).router.routes
    first = {
        prefix: next(i for i, route in enumerate(routes) if any(p.startswith(prefix) for p in _paths(route)))
        for prefix in ("/webhooks/twilio/voice", "/webhooks/meta", "/api/tickets", "/api/queues")
    }
    assert max(first["/webhooks/twilio/voice"], first["/webhooks/meta"]) < min(
        first["/api/tickets"], first["/api/queues"]
    )
