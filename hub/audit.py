"""Placeholder for the audit log the lead is adding to main (``hub.audit.record``); replaced at the merge."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.principals import Principal


async def record(
    conn: AsyncConnection,
    *,
    actor: Principal | None,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one entry in ``conn``'s transaction (this placeholder writes nothing)."""
    return None


def spreadsheet_safe(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with =, +, -, @ (or a tab or carriage return)
    gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
