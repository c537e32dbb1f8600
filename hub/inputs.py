"""What every piece of input goes through where it enters: text no database can store is cleaned, and integers
are bounded by the columns they end up in.

Text: PostgreSQL cannot store U+0000 in ``text`` or ``jsonb`` ("invalid byte sequence for encoding UTF8"), and
neither database driver can encode a lone surrogate (U+D800-U+DFFF, which JSON's ``\\ud800`` escapes and Python's
``json`` module let through) as UTF-8. ``clean`` drops the NULs and replaces lone surrogates with U+FFFD, in a
string or anywhere inside a JSON-like value. It runs once where text enters: ``Input`` (the base of the API's
request bodies and of ``InboundMessage``, which every channel adapter builds) and the websocket frames. It
is on the ingest and chat hot paths, so a string that needs nothing costs two checks and no allocation: a
``'\\x00' in s`` scan, and ``str.isascii()``, which CPython answers from a flag without reading the string.

Integers: ids are ``integer`` columns (32-bit on PostgreSQL, 64-bit on SQLite); counts, priorities and levels
are ``integer`` columns or JSON values. ``DbInt`` is any integer such a column holds, ``Id`` a row id. In a
JSON body ``Id`` is strict (``true`` is not agent 1, ``"1"`` is not either); in a path or query it is read from
the URL's text, so the strictness stays with bodies.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeGuard

from annotated_types import Ge, Le
from pydantic import AfterValidator, AwareDatetime, BaseModel, Strict, model_validator

# PostgreSQL's ``integer``: the narrowest integer column either database has.
DB_INT_MIN = -(2**31)
DB_INT_MAX = 2**31 - 1

DbInt = Annotated[int, Ge(DB_INT_MIN), Le(DB_INT_MAX)]
"""An integer an ``integer`` column (or a JSON value read back into one) can hold."""

Count = Annotated[int, Ge(0), Le(DB_INT_MAX)]
"""A non-negative integer of a column: seconds, sizes, capacities, levels, offsets."""

Id = Annotated[int, Strict(), Ge(1), Le(DB_INT_MAX)]
"""A row id in a JSON body: a JSON integer from 1 to the column's largest."""

IdParam = Annotated[int, Ge(1), Le(DB_INT_MAX)]
"""A row id in a path or query parameter (text in the URL, so not strict)."""


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is outside the range a database stores") from None


Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""A point in time given with its offset (``2026-12-06T13:00:00Z``, ``...+01:00``), read as UTC: the columns
store timezone-aware UTC, so a time without an offset is refused (422) rather than guessed."""


def is_id(value: Any) -> TypeGuard[int]:
    """Whether ``value`` (from a parsed websocket frame) is a row id: a JSON integer, not a boolean, in range."""
    return type(value) is int and 1 <= value <= DB_INT_MAX


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` without NULs and with lone surrogates replaced by U+FFFD; ``value`` itself when it has neither."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii() and _SURROGATE.search(value) is not None:
        value = _SURROGATE.sub("\ufffd", value)
    return value


def clean(value: Any) -> Any:
    """``value`` with every string in it (dict keys too) cleaned by ``clean_text``. Containers are copied only
    when something in them changed, so clean input comes back as the very same object."""
    kind = type(value)
    if kind is str:
        return clean_text(value)
    if kind is dict:
        return _clean_dict(value)
    if kind is list or kind is tuple:
        return _clean_sequence(value)
    if isinstance(value, str):  # a str subclass (an enum member): as it is, unless it must be cleaned
        return clean_text(value)
    return value


def _clean_dict(value: dict[Any, Any]) -> dict[Any, Any]:
    # The checks of clean_text inline: a function call per key and value would cost more than the checks.
    changed: dict[Any, Any] | None = None
    for key, item in value.items():
        new_key = key
        if type(key) is str and ("\x00" in key or not key.isascii()):
            new_key = clean_text(key)
        kind = type(item)
        new_item = item
        if kind is str:
            if "\x00" in item or not item.isascii():
                new_item = clean_text(item)
        elif kind is dict or kind is list or kind is tuple:
            new_item = clean(item)
        if changed is None and (new_key is not key or new_item is not item):
            changed = {}
            for k, v in value.items():
                if k is key:
                    break
                changed[k] = v
        if changed is not None:
            changed[new_key] = new_item
    return value if changed is None else changed


def _clean_sequence(value: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    items: list[Any] | None = None
    for n, item in enumerate(value):
        kind = type(item)
        new_item = item
        if kind is str:
            if "\x00" in item or not item.isascii():
                new_item = clean_text(item)
        elif kind is dict or kind is list or kind is tuple:
            new_item = clean(item)
        if items is None and new_item is not item:
            items = list(value[:n])
        if items is not None:
            items.append(new_item)
    if items is None:
        return value
    return items if type(value) is list else tuple(items)


class Input(BaseModel):
    """The base of every model that input is read into (request bodies, ``InboundMessage``): strings anywhere in
    the input are cleaned (``clean``) before the fields are validated, so no endpoint has to."""

    @model_validator(mode="before")
    @classmethod
    def _clean_text(cls, data: Any) -> Any:
        return clean(data)
