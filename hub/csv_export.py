"""CSV downloads (the audit log, reports): cells a spreadsheet would run as formulas are made text, and the
answer is documented as ``text/csv`` in the OpenAPI schema.

A CSV route keeps FastAPI's default (JSON) response class, so its error answers stay documented as JSON, and
declares its CSV answer with ``responses=CSV_ANSWER``:

    @router.get("/things.csv", responses=CSV_ANSWER)
    async def things_csv(...) -> Response:
        return CsvResponse(text, headers={"Content-Disposition": 'attachment; filename="things.csv"'})
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response


class CsvResponse(Response):
    media_type = "text/csv"  # Starlette adds "; charset=utf-8"


CSV_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"description": "CSV, a header row first", "content": {"text/csv": {"schema": {"type": "string"}}}}
}


def spreadsheet_safe(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with =, +, -, @ (or a tab or carriage return, which
    some strip first) would run as a formula, so it gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
