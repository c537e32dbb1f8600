"""What the core knows about channels: one table, ``SPECS``, of every channel name the hub may carry.

A channel package (``channels/<name>``, the ``Channel`` protocol of ``channels/base.py``) implements one or
more of these names: webchat brings ``webchat``; email brings ``email``; the phone package will bring
``voice``, ``sms`` and ``whatsapp``; the social package ``messenger``, ``instagram`` and ``telegram``. The
core (routing, identities, queue rules, ingest) reads only this table, never a channel package, so it knows
a name's capacity class and identity kind before the package that implements it exists. A name is declared
here once, with:

- ``identity_kind``: what its senders' identities are by default (``Identity.kind`` may say otherwise), and
  through ``NORMALIZATION`` how their values are normalized: a phone number to E.164 (every phone kind of one
  number is one person: SMS, voice and WhatsApp), an email address lower-cased, a provider's id as given;
- ``capacity_class``: how routing counts the work (an agent's default capacity per class, and a call in hand
  blocks chats and messaging, see ``ticketing.routing``);
- ``live``: the customer is on the line or in an open window, waiting for the answer (a call, the chat
  widget), rather than writing asynchronously (email, SMS, the messaging apps);
- ``window``: the messaging window the provider enforces (``hub.windows``), if any: WhatsApp answers free text
  only within 24 hours of the customer's last message (then approved templates only), Messenger and Instagram
  within 24 hours, or 7 days for a human agent's reply tagged ``HUMAN_AGENT``. The same rule holds whoever
  carries the name (Twilio's WhatsApp or Meta's Cloud API).

A name is what the customer uses, not who carries it: WhatsApp is ``whatsapp`` whether Twilio or Meta's
Cloud API carries a hub's numbers, and one registered channel brings it (``hub/app.py`` refuses to start with
two). Adding a name is one line in ``SPECS`` (CONTRIBUTING.md); mind that routing's sweeps look for waiting
work per queue and channel name, so a name costs every sweep a few index probes even before it carries work.
Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType


class CapacityClass(StrEnum):
    """How routing counts a channel's work."""

    VOICE = "voice"
    CHAT = "chat"
    MESSAGING = "messaging"
    EMAIL = "email"


class IdentityKind(StrEnum):
    """How a contact is reached; (kind, normalized value) names one contact."""

    EMAIL = "email"
    PHONE = "phone"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"


class Normalization(StrEnum):
    """How an identity's value is normalized before it is looked up or stored."""

    PHONE = "phone"  # E.164; one number is one person under every phone-normalized kind
    EMAIL = "email"  # an address, lower-cased
    OPAQUE = "opaque"  # a provider's id (page-scoped, chat id, visitor id), kept as given


NORMALIZATION: Mapping[IdentityKind, Normalization] = MappingProxyType(
    {
        IdentityKind.EMAIL: Normalization.EMAIL,
        IdentityKind.PHONE: Normalization.PHONE,
        IdentityKind.WHATSAPP: Normalization.PHONE,
        IdentityKind.MESSENGER: Normalization.OPAQUE,  # a page-scoped id (PSID)
        IdentityKind.INSTAGRAM: Normalization.OPAQUE,  # an Instagram-scoped id (IGSID)
        IdentityKind.TELEGRAM: Normalization.OPAQUE,  # a chat id
        IdentityKind.WEBCHAT: Normalization.OPAQUE,  # a visitor's id, or a site's user id it vouched for
    }
)


@dataclass(frozen=True, slots=True)
class WindowRule:
    """How long after the customer's last message a reply may be free text (``free``), and, for channels that
    have one, how much longer a human agent's reply may be with the provider's ``tag``; after that only an
    approved template (``templates``), or nothing."""

    free: timedelta
    tagged: timedelta | None = None
    tag: str | None = None
    templates: bool = False


DAY = timedelta(hours=24)
WHATSAPP_WINDOW = WindowRule(free=DAY, templates=True)
META_WINDOW = WindowRule(free=DAY, tagged=timedelta(days=7), tag="HUMAN_AGENT")


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel name and the facts the core needs about it (see the module docstring)."""

    name: str
    identity_kind: IdentityKind
    capacity_class: CapacityClass
    live: bool
    window: WindowRule | None = None


SPECS: Mapping[str, ChannelSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ChannelSpec("email", IdentityKind.EMAIL, CapacityClass.EMAIL, live=False),
            ChannelSpec("sms", IdentityKind.PHONE, CapacityClass.MESSAGING, live=False),
            ChannelSpec("whatsapp", IdentityKind.WHATSAPP, CapacityClass.MESSAGING, live=False, window=WHATSAPP_WINDOW),
            ChannelSpec("voice", IdentityKind.PHONE, CapacityClass.VOICE, live=True),
            ChannelSpec("webchat", IdentityKind.WEBCHAT, CapacityClass.CHAT, live=True),
            ChannelSpec("messenger", IdentityKind.MESSENGER, CapacityClass.MESSAGING, live=False, window=META_WINDOW),
            ChannelSpec("instagram", IdentityKind.INSTAGRAM, CapacityClass.MESSAGING, live=False, window=META_WINDOW),
            ChannelSpec("telegram", IdentityKind.TELEGRAM, CapacityClass.MESSAGING, live=False),
            # Public comments on a company's Facebook page posts and Instagram media (answered as comments, and
            # once privately): the sender's identity kind says which (messenger or instagram).
            ChannelSpec("comments", IdentityKind.MESSENGER, CapacityClass.MESSAGING, live=False),
        )
    }
)

# Every channel name, in the table's order.
CHANNELS: tuple[str, ...] = tuple(SPECS)

# A channel's senders' identity kind, by channel name. Ingest reads it for every message: a plain dict.
IDENTITY_OF_CHANNEL: Mapping[str, IdentityKind] = {n: s.identity_kind for n, s in SPECS.items()}


def channels_of(*classes: CapacityClass) -> frozenset[str]:
    """The channel names whose capacity class is one of ``classes``."""
    return frozenset(name for name, spec in SPECS.items() if spec.capacity_class in classes)


def kinds_normalized_as(normalization: Normalization) -> frozenset[IdentityKind]:
    """The identity kinds whose values are normalized as ``normalization``."""
    return frozenset(kind for kind, how in NORMALIZATION.items() if how is normalization)
