"""The public help center at ``/help``: categories, article pages and search, server-rendered with Jinja2 and
complete without JavaScript. Only published articles are ever shown here (drafts and internal articles
answer 404, as if they did not exist).

Language: ``?lang=xx`` (the switcher's links) wins, then the browser's ``Accept-Language``, among the locales
that have published articles; an article is shown in the best of its own translations. Every page has a
``<title>``, a meta description, a canonical link and ``hreflang`` alternates for search engines, and
``/help/sitemap.xml`` lists every published page.

Templates live in ``knowledge_base/templates/help/`` (the knowledge base's public surface, beside its code).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from hub.deps import RuntimeDep
from hub.errors import SwitchboardError
from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.models import DEFAULT_LOCALE, ArticleRead, ArticleStatus
from knowledge_base.render import excerpt
from knowledge_base.search import search
from knowledge_base.suggest import knowledge_index

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

PUBLIC = (ArticleStatus.PUBLISHED,)
# No script at all; styles from this origin; images in articles from anywhere over https.
HELP_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'self'"
)
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "es": "Español", "fr": "Français", "it": "Italiano",
                  "nl": "Nederlands", "pt": "Português", "pl": "Polski", "sv": "Svenska"}  # fmt: skip

_STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "help_center": "Help center", "tagline": "Answers to common questions: orders, delivery, returns and more.",
        "how_can_we_help": "How can we help?", "search": "Search", "search_label": "Search the help center",
        "search_placeholder": "Describe your question", "result_for": "result for", "results_for": "results for",
        "nothing_found": "Nothing found for", "browse": "Browse all articles", "updated": "Updated",
        "related": "Related articles",
        "articles_in": "Articles in", "not_found": "Page not found", "no_articles": "No articles yet.",
        "language": "Language", "footer": "Still stuck? Use the chat button on our shop, or write to us.",
        "empty_query": "Type a question to search for.",
        "long_query": "Your question is too long: use at most 200 characters.",
    },
    "de": {
        "help_center": "Hilfe",
        "tagline": "Antworten auf häufige Fragen: Bestellungen, Lieferung, Rücksendungen und mehr.",
        "how_can_we_help": "Wie können wir helfen?", "search": "Suchen", "search_label": "Hilfe durchsuchen",
        "search_placeholder": "Beschreiben Sie Ihre Frage", "result_for": "Ergebnis für",
        "results_for": "Ergebnisse für", "nothing_found": "Nichts gefunden für", "browse": "Alle Artikel",
        "updated": "Aktualisiert", "related": "Ähnliche Artikel",
        "articles_in": "Artikel in", "not_found": "Seite nicht gefunden", "no_articles": "Noch keine Artikel.",
        "language": "Sprache", "footer": "Noch Fragen? Nutzen Sie den Chat in unserem Shop oder schreiben Sie uns.",
        "empty_query": "Geben Sie eine Frage ein.", "long_query": "Ihre Frage ist zu lang: höchstens 200 Zeichen.",
    },
    "es": {
        "help_center": "Ayuda", "tagline": "Respuestas a preguntas frecuentes: pedidos, envíos, devoluciones y más.",
        "how_can_we_help": "¿Cómo podemos ayudarte?", "search": "Buscar", "search_label": "Buscar en la ayuda",
        "search_placeholder": "Describe tu pregunta", "result_for": "resultado para", "results_for": "resultados para",
        "nothing_found": "No hay resultados para", "browse": "Ver todos los artículos", "updated": "Actualizado",
        "related": "Artículos relacionados", "articles_in": "Artículos en", "not_found": "Página no encontrada",
        "no_articles": "Aún no hay artículos.", "language": "Idioma",
        "footer": "¿Sigues con dudas? Usa el chat de nuestra tienda o escríbenos.",
        "empty_query": "Escribe una pregunta.",
        "long_query": "La pregunta es demasiado larga: 200 caracteres como máximo.",
    },
}  # fmt: skip


def strings(locale: str) -> dict[str, str]:
    return {**_STRINGS["en"], **_STRINGS.get(locale.split("-")[0], {})}


def accepted_languages(header: str) -> list[str]:
    """The languages of an ``Accept-Language`` header, most wanted first (``de-CH`` also gives ``de``)."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        code, _, params = part.strip().partition(";")
        code = code.strip().lower()
        if not code or code == "*":
            continue
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        weighted.append((-quality, position, code))
    out: list[str] = []
    for _, _, code in sorted(weighted):
        for candidate in (code, code.split("-")[0]):
            if candidate not in out:
                out.append(candidate)
    return out


def choose_locale(request: Request, available: Sequence[str]) -> str:
    """``?lang=``, else the best of Accept-Language, among ``available``; else the default locale."""
    if not available:
        return DEFAULT_LOCALE
    asked = request.query_params.get("lang", "").lower()
    wanted = ([asked] if asked else []) + accepted_languages(request.headers.get("accept-language", ""))
    lowered = {a.lower(): a for a in available}
    for code in wanted:
        if code in lowered:
            return lowered[code]
    return DEFAULT_LOCALE if DEFAULT_LOCALE in available else available[0]


def _lang_query(locale: str) -> str:
    return "" if locale == DEFAULT_LOCALE else f"?lang={quote(locale)}"


def _href(path: str, locale: str) -> str:
    return path + _lang_query(locale)


def _page(
    request: Request, name: str, *, locale: str, path: str, locales: Sequence[str], status: int = 200, **context: Any
) -> HTMLResponse:
    base = request.app.state.settings.public_url
    switcher = [(code, LANGUAGE_NAMES.get(code, code), _href(path, code)) for code in locales]
    response = templates.TemplateResponse(
        request,
        name,
        {
            "locale": locale,
            "default_locale": DEFAULT_LOCALE,
            "t": strings(locale),
            "site_name": "Kettle & Co.",
            "lang_query": _lang_query(locale),
            "canonical": base + _href(path, locale),
            "alternates": [(code, base + _href(path, code)) for code in locales] if len(locales) > 1 else [],
            "switcher": switcher,
            **context,
        },
        status_code=status,
    )
    response.headers["Content-Security-Policy"] = HELP_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Language"] = locale
    response.headers["Vary"] = "Accept-Language"
    return response


def _not_found(request: Request, locale: str, locales: Sequence[str]) -> HTMLResponse:
    return _page(request, "help/not_found.html", locale=locale, path="/help", locales=locales, status=404,
                 robots="noindex", query="")  # fmt: skip


@router.get("/help/help.css")
async def help_css() -> FileResponse:
    return FileResponse(HERE / "static" / "help.css", media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/help", response_class=HTMLResponse)
async def help_index(request: Request, rt: RuntimeDep) -> HTMLResponse:
    """The help center's front page: a search box and every category with its articles."""
    locales = await service.locales_of(rt)
    locale = choose_locale(request, locales)
    summaries = await service.list_articles(rt, statuses=PUBLIC, locale=locale, limit=1000)
    groups: dict[str, list[dict[str, str]]] = {}
    for s in summaries:
        groups.setdefault(s.category, []).append({"title": s.title, "href": _href(f"/help/{s.slug}", locale)})
    return _page(request, "help/index.html", locale=locale, path="/help", locales=locales,
                 groups=sorted(groups.items()), query="")  # fmt: skip


@router.get("/help/category/{category}", response_class=HTMLResponse)
async def help_category(category: str, request: Request, rt: RuntimeDep) -> HTMLResponse:
    """The published articles of one category."""
    locales = await service.locales_of(rt)
    locale = choose_locale(request, locales)
    summaries = await service.list_articles(rt, statuses=PUBLIC, locale=locale, category=category[:100], limit=1000)
    if not summaries:
        return _not_found(request, locale, locales)
    articles = []
    for s in summaries:
        full = await service.get_article(rt, article_id=s.id)
        articles.append({"title": s.title, "href": _href(f"/help/{s.slug}", locale), "excerpt": excerpt(full.body)})
    return _page(request, "help/category.html", locale=locale, path=f"/help/category/{quote(category)}",
                 locales=locales, category=category, articles=articles, query="")  # fmt: skip


@router.get("/help/search", response_class=HTMLResponse)
async def help_search(request: Request, rt: RuntimeDep, q: str = "", category: str | None = None) -> HTMLResponse:
    """Search published articles (an empty or too long query: 422, with the form and what to do)."""
    locales = await service.locales_of(rt)
    locale = choose_locale(request, locales)
    context: dict[str, Any] = {"query": q[:200], "hits": [], "error": None, "robots": "noindex"}
    status = 200
    try:
        index = await knowledge_index(rt).available()
        hits = await search(rt, query=q, statuses=PUBLIC, index=index, locale=locale, category=category)
        context["hits"] = [{**h.model_dump(), "href": _href(f"/help/{h.slug}", h.locale)} for h in hits]
    except SwitchboardError as exc:
        status = exc.status
        context["error"] = strings(locale)["empty_query" if not q.strip() else "long_query"]
    path = "/help/search"
    return _page(request, "help/search.html", locale=locale, path=path, locales=locales, status=status, **context)


async def _related(rt: Runtime, article: ArticleRead) -> list[dict[str, str]]:
    index = await knowledge_index(rt).available()
    if index is None:
        return []  # the index's first build is not in yet: the page goes without related articles
    about = f"{article.title}. {' '.join(article.phrasings[:3])}"
    ranked = index.rank(about, limit=4, statuses=frozenset({ArticleStatus.PUBLISHED.value}))
    return [
        {"title": r.doc.title, "href": _href(f"/help/{r.doc.slug}", r.doc.locale)}
        for r in ranked
        if r.doc.slug != article.slug and r.doc.locale == article.locale
    ][:3]


# The sitemaps protocol's limit of URLs in one file.
SITEMAP_URLS = 50_000


@router.get("/help/sitemap.xml")
async def help_sitemap(request: Request, rt: RuntimeDep) -> Response:
    """For search engines (the sitemaps.org protocol): the front page and each category's in every language that
    has published articles, and every published article in each of its languages, with its last change. The
    URLs are the pages' canonical links."""
    base = request.app.state.settings.public_url
    summaries = await service.list_articles(rt, statuses=PUBLIC, limit=SITEMAP_URLS)
    entries: dict[str, str | None] = {}
    for code in sorted({s.locale for s in summaries}):
        entries[_href("/help", code)] = None
    for s in summaries:
        entries.setdefault(_href(f"/help/category/{quote(s.category)}", s.locale), None)
    for s in summaries:
        entries[_href(f"/help/{quote(s.slug)}", s.locale)] = s.updated_at.date().isoformat()
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    for path, lastmod in list(entries.items())[:SITEMAP_URLS]:
        changed = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
        lines.append(f"<url><loc>{xml_escape(base + path)}</loc>{changed}</url>")
    lines.append("</urlset>")
    return Response("\n".join(lines) + "\n", media_type="application/xml", headers={"Cache-Control": "max-age=300"})


@router.get("/help/{slug}", response_class=HTMLResponse)
async def help_article(slug: str, request: Request, rt: RuntimeDep) -> Response:
    """One published article, in the visitor's language when it has that translation."""
    translations = await service.find_article(rt, slug=slug[:120], statuses=PUBLIC)
    if not translations:
        locales = await service.locales_of(rt)
        return _not_found(request, choose_locale(request, locales), locales)
    own = [a.locale for a in translations]
    locale = choose_locale(request, own)
    article = next(a for a in translations if a.locale == locale)
    return _page(request, "help/article.html", locale=locale, path=f"/help/{quote(slug)}", locales=own,
                 article=article, description=excerpt(article.body), related=await _related(rt, article),
                 query="")  # fmt: skip
