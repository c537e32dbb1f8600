"""Fixtures of the knowledge base's tests: a few articles of every status, made before the server starts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from hub.config import Settings
from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.models import ArticleCreate, ArticleStatus
from tests.agent_ui.conftest import browser, dialogs  # noqa: F401 (the browser tests' fixtures)
from tests.conftest import LiveServer

HOSTILE = """Read this first.

<script>alert('script')</script>
<img src="x" onerror="alert('onerror')">
<a href="javascript:alert('link')">click me</a>
[markdown link](javascript:alert('md'))
<div onmouseover="alert('hover')">hover here</div>
<iframe src="javascript:alert('frame')"></iframe>
<svg onload="alert('svg')"></svg>

Returns are free within 30 days.
"""


@pytest.fixture
def kb_settings(settings: Settings) -> Settings:
    """Words-alone ranking (fast to build in every test); the embedders have tests of their own."""
    return settings.model_copy(update={"kb_embedder": "none"})


@pytest.fixture
async def articles(rt: Runtime) -> dict[str, int]:
    """Published (with a German translation), internal, draft and hostile articles."""
    made = [
        ArticleCreate(slug="returns", title="Return an item", category="Returns", status=ArticleStatus.PUBLISHED,
                      body="You can **return** any item within 30 days. Print the free label.",
                      phrasings=["How do I send something back?"], tags=["returns"]),
        ArticleCreate(slug="returns", locale="de", title="Artikel zurücksenden", category="Rückgabe",
                      status=ArticleStatus.PUBLISHED, body="Sie können jeden Artikel 30 Tage lang **zurücksenden**."),
        ArticleCreate(slug="shipping", title="Delivery times", category="Shipping", status=ArticleStatus.PUBLISHED,
                      body="Standard delivery takes 2-3 working days.", phrasings=["How long is shipping?"]),
        ArticleCreate(slug="goodwill", title="Secret goodwill credit policy", category="Internal",
                      status=ArticleStatus.INTERNAL, body="Agents may give a zanzibar credit of $10."),
        ArticleCreate(slug="upcoming", title="Unannounced holiday returns", category="Returns",
                      status=ArticleStatus.DRAFT, body="Draft: the zanzibar returns window."),
        ArticleCreate(slug="hostile", title="Hostile <b>title</b> & \"quotes\"", category="Returns",
                      status=ArticleStatus.PUBLISHED, body=HOSTILE),
    ]  # fmt: skip
    ids: dict[str, int] = {}
    for data in made:
        article = await service.create_article(rt, data=data)
        ids[f"{data.slug}:{data.locale}"] = article.id
    return ids


@pytest.fixture
def kb_server(kb_settings: Settings) -> Iterator[LiveServer]:
    """A live server ranking by words alone. List it after ``articles`` so they exist when it starts."""
    live = LiveServer(kb_settings).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
async def kb_client(kb_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=kb_server.url, timeout=20) as c:
        yield c
