"""The demo's knowledge base: the pretend shop's articles (``demo/articles``), seeded by ``switchboard demo``
into an empty knowledge base, and the sample eval sets (``demo/eval-tune.jsonl``, ``demo/eval-test.jsonl``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.files import read_folder

DEMO = Path(__file__).parent / "demo"
ARTICLES = DEMO / "articles"
TUNE_SET = DEMO / "eval-tune.jsonl"
TEST_SET = DEMO / "eval-test.jsonl"


async def seed(rt: Runtime) -> int:
    """Import the demo articles when the knowledge base is empty; returns how many were added."""
    async with rt.read() as conn:
        if (await conn.execute(select(func.count()).select_from(service.A))).scalar_one():
            return 0
    files, problems = read_folder(ARTICLES)
    if problems:  # the shipped files are checked by the tests; this would be a packaging error
        raise RuntimeError("; ".join(problems))
    for item in files:
        await service.create_article(rt, data=item.article, source="demo")
    return len(files)
