"""What a channel is: the ``Channel`` protocol every channel package implements and ``hub/app.py`` loops over.

A channel package (``channels/<package>/``) is named once, by one line of ``CHANNEL_PACKAGES`` in
``hub/app.py``, and its ``__init__.py`` defines ``create_channel(settings) -> Channel``. With it the
application, and nothing else:

- at build time (``create_app``), asks the channel for the channel names it brings (``specs``, rows of
  ``hub.channels.SPECS``: identity kind, capacity class, live or asynchronous), its routers, middleware and
  body limits, and refuses a name that is not in ``SPECS`` or that two channels bring;
- at start, calls ``start(ctx)``: the channel verifies and parses what arrives (webhooks, IMAP, websockets)
  into ``hub.messages.InboundMessage`` and hands it to ``ctx.ingest`` (which returns once the message is
  committed), asks the core anything else through ``ctx.rt.ports`` (``hub.ports``), and runs its background
  work (pollers, listeners);
- then gives its ``senders`` (one ``hub.messages.Sender`` per channel name it delivers on) to the outbox
  dispatcher, which calls them with each committed reply, and registers its ``reply_hooks`` on the runtime
  (what the channel sets on a reply as the core stores it: an email's Message-ID and subject tag);
- at shutdown, calls ``stop()``;
- for ``switchboard demo``, calls ``seed_demo(rt)`` after the core's demo data is seeded.

Channels import ``hub`` only (and ``ivr_flows`` for the phone channel), never ``ticketing`` nor each other
(the import-linter contracts in ``pyproject.toml``). A channel's settings are fields of ``hub.config.Settings``
named after its ``settings_section`` (``chat`` -> ``SWITCHBOARD_CHAT_*``). Commands of its own, if any, live
in its ``cli`` module (see CONTRIBUTING.md). Adding a channel: CONTRIBUTING.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter
from starlette.middleware import Middleware

from hub.channels import CapacityClass, ChannelSpec, IdentityKind
from hub.config import Settings
from hub.messages import Ingest, IngestAll, ReplyHook, Sender
from hub.runtime import Runtime


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What a channel receives when the application starts."""

    rt: Runtime  # settings, database, event hub, metrics, and the core's ports (``rt.ports``)
    ingest: Ingest  # hands one InboundMessage to the core; returns once it is committed
    # Hands a batch that arrived together to the core, committed together (a webhook's); None: one by one.
    ingest_all: IngestAll | None = None


class Channel(Protocol):
    """One channel package's part in a running hub (see the module docstring for when each is called)."""

    @property
    def specs(self) -> Sequence[ChannelSpec]:
        """The channel names it brings, each a row of ``hub.channels.SPECS``."""

    @property
    def settings_section(self) -> str:
        """The prefix of its settings in ``hub.config.Settings`` (``chat`` for ``SWITCHBOARD_CHAT_*``)."""

    def routers(self) -> Sequence[APIRouter]:
        """Its HTTP and websocket endpoints (webhooks, widget, admin API)."""

    def middleware(self) -> Sequence[Middleware]:
        """ASGI middleware it needs around the whole application (e.g. CORS for its public endpoints)."""

    def body_limits(self) -> Mapping[str, int]:
        """Request paths whose bodies may exceed ``SWITCHBOARD_MAX_BODY_BYTES`` (uploads), with their limit."""

    @property
    def senders(self) -> Mapping[str, Sender]:
        """The deliverer of each channel name it sends replies on; read once it has started."""

    @property
    def reply_hooks(self) -> Mapping[str, ReplyHook]:
        """What it sets on a reply the core stores for one of its names (``hub.messages.ReplyHook``); read
        once it has started. Most channels have none."""

    async def start(self, ctx: ChannelContext) -> None:
        """Build the running part and start its background work."""

    async def stop(self) -> None:
        """Stop its background work; what it was handed is finished or left for the next start."""

    async def seed_demo(self, rt: Runtime) -> None:
        """Demo data of its own for ``switchboard demo``, after the core's; run at every ``demo``, so it seeds
        only what is missing. Most channels have none."""


# What a channel package's ``create_channel`` is.
ChannelFactory = Callable[[Settings], Channel]


def identity_kinds(channel: Channel) -> frozenset[IdentityKind]:
    """The identity kinds its senders have by default."""
    return frozenset(spec.identity_kind for spec in channel.specs)


def capacity_classes(channel: Channel) -> frozenset[CapacityClass]:
    """How routing counts the work of its channel names."""
    return frozenset(spec.capacity_class for spec in channel.specs)


def names(channel: Channel) -> tuple[str, ...]:
    """The channel names it brings."""
    return tuple(spec.name for spec in channel.specs)


# The members every channel has (checked when it is built: mypy checks a package's ``create_channel``, this
# catches a registry line naming something else).
MEMBERS = (
    "specs",
    "settings_section",
    "routers",
    "middleware",
    "body_limits",
    "senders",
    "reply_hooks",
    "start",
    "stop",
    "seed_demo",
)


def build_channel(factory: object, settings: Settings) -> Channel:
    """Call a channel package's ``create_channel`` and check that what it built has every ``Channel`` member
    (looked up without running them: ``senders`` only answers once started)."""
    if not callable(factory):
        raise TypeError(f"{factory!r} is not a channel factory (create_channel)")
    channel = factory(settings)
    missing = [m for m in MEMBERS if inspect.getattr_static(channel, m, None) is None]
    if missing:
        raise TypeError(f"{type(channel).__name__} is not a channels.base.Channel: it has no {', '.join(missing)}")
    return channel  # type: ignore[no-any-return]
