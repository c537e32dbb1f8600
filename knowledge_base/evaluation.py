"""Measuring ranking: top-1, top-3 and mean reciprocal rank over JSON Lines of ``{"query", "expected"}``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from knowledge_base.exceptions import InvalidEvalFile
from knowledge_base.ranking import RankIndex


@dataclass(frozen=True, slots=True)
class Case:
    query: str
    expected: str


@dataclass(frozen=True, slots=True)
class Scores:
    top1: float
    top3: float
    mrr: float

    def as_dict(self) -> dict[str, float]:
        return {"top1": round(self.top1, 4), "top3": round(self.top3, 4), "mrr": round(self.mrr, 4)}


def read_cases(path: Path) -> list[Case]:
    """The cases of a JSON Lines file; a bad line is reported with its number."""
    cases: list[Case] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidEvalFile(f"{path}: cannot read ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidEvalFile(f"{path}:{number}: not JSON ({exc.msg})") from None
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("query"), str)
            or not isinstance(item.get("expected"), str)
        ):
            raise InvalidEvalFile(f'{path}:{number}: want {{"query": "...", "expected": "article-slug"}}')
        cases.append(Case(item["query"], item["expected"]))
    if not cases:
        raise InvalidEvalFile(f"{path}: no cases")
    return cases


def score(cases: Sequence[Case], ranked: Callable[[str], list[str]]) -> Scores:
    """Top-1, top-3 and MRR (over the first 10) of ``ranked(query)`` (slugs, best first)."""
    top1 = top3 = 0
    reciprocal = 0.0
    for case in cases:
        slugs = ranked(case.query)[:10]
        if case.expected in slugs:
            rank = slugs.index(case.expected) + 1
            top1 += rank == 1
            top3 += rank <= 3
            reciprocal += 1.0 / rank
    n = len(cases)
    return Scores(top1 / n, top3 / n, reciprocal / n)


def evaluate(index: RankIndex, cases: Iterable[Case]) -> dict[str, Scores]:
    """Switchboard's ranking and plain BM25 side by side."""
    items = list(cases)
    return {
        "switchboard": score(items, lambda q: [r.doc.slug for r in index.rank(q, limit=10)]),
        "bm25": score(items, lambda q: [r.doc.slug for r in index.rank(q, limit=10, bm25_only=True)]),
    }
