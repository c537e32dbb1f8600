"""Markdown to safe HTML (markdown-it-py, then nh3) and to plain text (for search and snippets).

Article bodies are written by people with an account, but pasted from anywhere: raw HTML in the Markdown is
kept only as far as nh3's allow-list goes, so a ``<script>``, an ``onerror=`` or a ``javascript:`` link never
reaches a browser in any view (help center, console, admin preview). Links get ``rel="noopener noreferrer"``.
"""

from __future__ import annotations

import html
import re

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable("table")

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
    "code": {"class"},
}
URL_SCHEMES = {"http", "https", "mailto", "tel"}


def to_html(markdown: str) -> str:
    """The body as sanitized HTML."""
    return nh3.clean(
        _md.render(markdown),
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def to_text(markdown: str) -> str:
    """The body as plain text on one line (what search indexes and snippets quote)."""
    rendered = nh3.clean(_md.render(markdown), tags=set(), attributes={})  # strips every tag, keeps the text
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", rendered))).strip()


def excerpt(markdown: str, length: int = 160) -> str:
    """The first ``length`` characters of the plain text, cut at a word (a meta description)."""
    text = to_text(markdown)
    if len(text) <= length:
        return text
    cut = text[:length].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:") + "…"
