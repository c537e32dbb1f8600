"""Articles as Markdown files with YAML front matter (``switchboard kb import`` / ``export``).

A file::

    ---
    title: Return an item
    category: Returns & refunds
    tags: [returns, label]
    locale: en
    status: published          # draft, internal or published
    phrasings:                 # questions the article answers ("also asked as")
      - How do I send something back?
    ---
    The body, in Markdown.

The file name without ``.md`` is the slug. Translations live in a folder named after their locale
(``de/return-an-item.md`` with ``locale: de``); ``export`` writes them so, and ``import`` reads every ``.md``
under the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from knowledge_base.exceptions import InvalidFrontMatter
from knowledge_base.models import DEFAULT_LOCALE, ArticleCreate

FENCE = "---"


@dataclass(frozen=True, slots=True)
class ArticleFile:
    path: Path
    article: ArticleCreate


def parse_article(text: str, *, slug: str, name: str = "<text>") -> ArticleCreate:
    """The article in ``text``; a problem raises ``InvalidFrontMatter`` naming ``name`` and the line."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != FENCE:
        raise InvalidFrontMatter(f"{name}:1: the file must start with a '---' line opening the front matter")
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == FENCE)
    except StopIteration:
        raise InvalidFrontMatter(f"{name}:1: the front matter opened here is never closed by a '---' line") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2  # +1 for the fence, +1 for 1-based lines
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidFrontMatter(f"{name}:{line}: front matter is not valid YAML: {problem}") from None
    if not isinstance(meta, dict):
        raise InvalidFrontMatter(f"{name}:2: front matter must be a mapping of keys (title, category, ...)")
    unknown = sorted(set(meta) - KEYS)
    if unknown:
        raise InvalidFrontMatter(
            f"{name}:{_line_of(lines, end, unknown[0])}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})"
        )
    body = "\n".join(lines[end + 1 :]).strip("\n")
    data: dict[str, Any] = {"slug": slug, "body": body, "locale": DEFAULT_LOCALE, **meta}
    try:
        return ArticleCreate.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        line = _line_of(lines, end, key) if key in meta else 1
        raise InvalidFrontMatter(f"{name}:{line}: {where or 'front matter'}: {err['msg']}") from None


KEYS = frozenset({"title", "category", "tags", "locale", "status", "phrasings"})


def _line_of(lines: list[str], end: int, key: str) -> int:
    for i in range(1, end):
        if lines[i].split(":", 1)[0].strip() == key:
            return i + 1
    return 2


def read_folder(folder: Path) -> tuple[list[ArticleFile], list[str]]:
    """Every article file under ``folder`` (sorted) and the problems of those that could not be read."""
    found: list[ArticleFile] = []
    problems: list[str] = []
    for path in sorted(folder.rglob("*.md")):
        name = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{name}:1: cannot read the file ({exc})")
            continue
        try:
            found.append(ArticleFile(path, parse_article(text, slug=path.stem, name=name)))
        except InvalidFrontMatter as exc:
            problems.append(exc.message)
    return found, problems


def render_article(article: ArticleCreate) -> str:
    """The file text of ``article`` (the inverse of ``parse_article``)."""
    meta = {
        "title": article.title,
        "category": article.category,
        "tags": list(article.tags),
        "locale": article.locale,
        "status": article.status.value,
        "phrasings": list(article.phrasings),
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"{FENCE}\n{front}{FENCE}\n\n{article.body.strip()}\n"


def file_path(folder: Path, article: ArticleCreate) -> Path:
    """Where ``export`` writes ``article``: the default locale at the top, translations in a locale folder."""
    base = folder if article.locale == DEFAULT_LOCALE else folder / article.locale
    return base / f"{article.slug}.md"
