"""Normalizing identities: one number or address, however written, is one identity."""

from __future__ import annotations

import pytest

from ticketing.exceptions import InvalidIdentity
from ticketing.identities import normalize


def test_a_number_written_three_ways_normalizes_to_one_e164_value() -> None:
    """National, international and WhatsApp-prefixed forms of one number give the same E.164 value, also when
    asked again (normalize keeps recent answers)."""
    for _ in range(2):
        assert normalize("phone", "(415) 555-0123") == ("phone", "+14155550123")
        assert normalize("phone", "+1 415 555 0123") == ("phone", "+14155550123")
        assert normalize("whatsapp", "whatsapp:+14155550123") == ("whatsapp", "+14155550123")


def test_the_default_region_decides_a_national_number() -> None:
    """A national number is read in the configured region: the same digits are another number elsewhere."""
    assert normalize("phone", "020 7946 0018", default_region="GB") == ("phone", "+442079460018")
    assert normalize("phone", "(415) 555-0123", default_region="US") == ("phone", "+14155550123")


def test_an_invalid_value_is_refused_every_time() -> None:
    """A refusal is not remembered as an answer: asking again raises again."""
    for _ in range(2):
        with pytest.raises(InvalidIdentity):
            normalize("phone", "not a number")
        with pytest.raises(InvalidIdentity):
            normalize("email", "no-at-sign")


def test_email_addresses_are_lower_cased() -> None:
    assert normalize("email", " Ann@Example.COM ") == ("email", "ann@example.com")
