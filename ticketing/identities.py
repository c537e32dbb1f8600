"""Normalizing how contacts are reached, so one address or number always resolves to one contact. Pure."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from hub.channels import NORMALIZATION, SPECS, IdentityKind, Normalization, kinds_normalized_as
from ticketing.exceptions import InvalidIdentity
from ticketing.models import IdentityRead

# Kinds whose value is a phone number: the same number on SMS, voice and WhatsApp is one person.
PHONE_KINDS = kinds_normalized_as(Normalization.PHONE)


def normalize(kind: str, value: str, *, default_region: str = "US") -> tuple[str, str]:
    """(kind, normalized value), as ``hub.channels.NORMALIZATION`` says: E.164 for phone numbers, lower-cased
    addresses for email, a provider's id as given."""
    return _normalize(kind, value, default_region)


# Parsing a phone number costs tens of microseconds, a good part of ingest's work per message, and the same
# senders write again and again. Pure, so a cache of recent senders is safe (invalid values raise, and an
# exception is never cached).
@lru_cache(maxsize=16_384)
def _normalize(kind: str, value: str, default_region: str) -> tuple[str, str]:
    try:
        ident = IdentityKind(kind)
    except ValueError:
        raise InvalidIdentity(f"unknown identity kind {kind!r}") from None
    raw = value.strip()
    how = NORMALIZATION[ident]
    if how is Normalization.PHONE:
        if raw.lower().startswith("whatsapp:"):
            raw = raw[len("whatsapp:") :]
        try:
            number = phonenumbers.parse(raw, default_region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidIdentity(f"{value!r} is not a phone number: {exc}") from None
        if not phonenumbers.is_possible_number(number):
            raise InvalidIdentity(f"{value!r} is not a possible phone number")
        return ident.value, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if how is Normalization.EMAIL:
        local, at, domain = raw.rpartition("@")
        if not at or not local or not domain or " " in raw:
            raise InvalidIdentity(f"{value!r} is not an email address")
        return ident.value, raw.lower()
    if not raw:
        raise InvalidIdentity(f"empty {kind} identity")
    return ident.value, raw


_PHONE_LOOKUP = tuple(sorted(k.value for k in PHONE_KINDS))


def lookup_kinds(kind: str) -> tuple[str, ...]:
    """The identity kinds under which the same value means the same contact."""
    if kind in PHONE_KINDS:
        return _PHONE_LOOKUP
    return (kind,)


_CHANNELS_OF_KIND: dict[str, list[str]] = {}
for _spec in SPECS.values():
    _CHANNELS_OF_KIND.setdefault(_spec.identity_kind.value, []).append(_spec.name)


def is_verified(kind: str, value: str) -> bool:
    """Whether someone vouched for the identity: a channel's provider did for an address, a number or a social
    id; a website visitor's id is only a cookie (``webchat`` ``visitor:…``), a site's signed-in user
    (``user:…``) was vouched for by the site's signature."""
    return not (kind == IdentityKind.WEBCHAT.value and not value.startswith("user:"))


def identity_read(kind: str, value: str) -> IdentityRead:
    """An identity as the API shows it: with the channels it reaches the contact on and whether it is verified."""
    return IdentityRead(
        kind=kind, value=value, channels=_CHANNELS_OF_KIND.get(kind, []), verified=is_verified(kind, value)
    )
