"""The public help center over HTTP: published articles only, the visitor's language, proper titles and links
for search engines, search with safe snippets, and clear 422s for empty or huge queries."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import httpx

from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.models import ArticleUpdate


async def test_front_page_lists_published_articles_by_category(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    r = await kb_client.get("/help")
    assert r.status_code == 200
    assert "<title>Help center · Kettle &amp; Co.</title>" in r.text
    assert '<a href="/help/returns">Return an item</a>' in r.text
    assert '<a href="/help/shipping">Delivery times</a>' in r.text
    assert "<script" not in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]


async def test_drafts_and_internal_articles_are_never_shown(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    """Not listed, not reachable by slug (404 as if missing), not in a category, not found by search."""
    pages = [await kb_client.get(p) for p in ("/help", "/help/category/Returns", "/help/category/Internal")]
    for page in pages:
        assert "goodwill" not in page.text.lower() and "Unannounced" not in page.text
    assert pages[2].status_code == 404
    for slug in ("goodwill", "upcoming"):
        r = await kb_client.get(f"/help/{slug}")
        assert r.status_code == 404
        assert "zanzibar" not in r.text
    found = await kb_client.get("/help/search", params={"q": "zanzibar credit"})
    assert found.status_code == 200
    assert "zanzibar" not in found.text.replace("“zanzibar credit”", "").replace('value="zanzibar credit"', "")
    assert "Secret goodwill" not in found.text and "Unannounced" not in found.text


async def test_article_page_has_title_description_canonical_and_alternates(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    r = await kb_client.get("/help/returns")
    assert r.status_code == 200
    assert "<title>Return an item · Kettle &amp; Co.</title>" in r.text
    assert '<meta name="description" content="You can return any item within 30 days. Print the free label.">' in r.text
    assert '<link rel="canonical" href="http://testserver.local/help/returns">' in r.text
    assert '<link rel="alternate" hreflang="de" href="http://testserver.local/help/returns?lang=de">' in r.text
    assert "<strong>return</strong>" in r.text
    assert '<html lang="en">' in r.text


async def test_the_visitors_language_is_chosen_and_can_be_switched(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    """Accept-Language picks the German translation; ?lang=en switches back; a language without a translation
    falls back to the default."""
    de = await kb_client.get("/help/returns", headers={"Accept-Language": "de-CH, de;q=0.9, en;q=0.5"})
    assert '<html lang="de">' in de.text and "Artikel zurücksenden" in de.text
    assert '<a href="/help/returns" hreflang="en" lang="en">English</a>' in de.text
    assert 'hreflang="de" lang="de" aria-current="true">Deutsch</a>' in de.text
    assert de.headers["content-language"] == "de"
    en = await kb_client.get("/help/returns?lang=en", headers={"Accept-Language": "de"})
    assert "Return an item" in en.text and '<html lang="en">' in en.text
    fr = await kb_client.get("/help/shipping", headers={"Accept-Language": "fr"})
    assert "Delivery times" in fr.text


async def test_hostile_markdown_is_sanitized_on_the_article_page(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    r = await kb_client.get("/help/hostile")
    assert r.status_code == 200
    body = r.text.lower()
    for bad in ("<script", "<iframe", "<svg"):
        assert bad not in body
    assert not re.search(r"<[^>]*\son\w+\s*=", body)  # no event handler on any element
    assert not re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", body)
    assert "Hostile &lt;b&gt;title&lt;/b&gt; &amp; &#34;quotes&#34;" in r.text
    assert "Returns are free within 30 days." in r.text


async def test_search_tolerates_typos_and_marks_matches_safely(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    """A misspelled word finds the article; the snippet marks the match and escapes everything else."""
    r = await kb_client.get("/help/search", params={"q": "retrun"})
    assert r.status_code == 200
    assert '<a href="/help/returns">Return an item</a>' in r.text
    assert "<mark>" in r.text
    hostile = await kb_client.get("/help/search", params={"q": "read this first"})
    snippets = re.findall(r'<p class="snippet">(.*?)</p>', hostile.text, re.S)
    assert snippets
    for s in snippets:
        assert re.sub(r"</?mark>", "", s).count("<") == 0  # no markup but the marks


async def test_search_counts_its_results_in_words_that_agree(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    """One hit is "1 result", several are "N results", in the visitor's language; the page's title names the
    search and the question."""
    one = await kb_client.get("/help/search", params={"q": "delivery"})
    assert "<p>1 result for “delivery”</p>" in one.text
    assert "<title>Search: “delivery” · Kettle &amp; Co.</title>" in one.text
    several = await kb_client.get("/help/search", params={"q": "return delivery"})
    assert re.search(r"<p>[2-9] results for “return delivery”</p>", several.text), several.text
    german = await kb_client.get("/help/search", params={"q": "zurücksenden", "lang": "de"})
    assert "<p>1 Ergebnis für “zurücksenden”</p>" in german.text


async def test_empty_or_huge_search_queries_get_a_clear_422(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    empty = await kb_client.get("/help/search", params={"q": "  "})
    assert empty.status_code == 422 and "Type a question" in empty.text
    huge = await kb_client.get("/help/search", params={"q": "x" * 201})
    assert huge.status_code == 422 and "too long" in huge.text


async def test_an_edit_is_searchable_at_once(
    articles: dict[str, int], kb_client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The full-text index follows the article in the same transaction: the new word is found right after."""
    await service.update_article(
        rt, article_id=articles["shipping:en"], data=ArticleUpdate(body="Parcels go by hovercraft.")
    )
    r = await kb_client.get("/help/search", params={"q": "hovercraft"})
    assert '<a href="/help/shipping">Delivery times</a>' in r.text


async def test_the_sitemap_lists_every_published_page_and_nothing_else(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    """/help/sitemap.xml (the sitemaps.org protocol) names the front page and the categories in each language
    and every published article in each of its languages, by their canonical links, each one a page that
    answers; drafts and internal articles are not in it."""
    r = await kb_client.get("/help/sitemap.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    root = ElementTree.fromstring(r.content)
    locs = [u.findtext("s:loc", namespaces=ns) or "" for u in root.findall("s:url", ns)]
    base = "http://testserver.local"
    assert {
        f"{base}/help",
        f"{base}/help?lang=de",
        f"{base}/help/returns",
        f"{base}/help/returns?lang=de",
        f"{base}/help/shipping",
        f"{base}/help/hostile",
        f"{base}/help/category/Shipping",
        f"{base}/help/category/R%C3%BCckgabe?lang=de",
    } <= set(locs)
    assert len(locs) == len(set(locs))
    assert not [loc for loc in locs if "goodwill" in loc or "upcoming" in loc or "Internal" in loc]
    article = next(u for u in root.findall("s:url", ns) if u.findtext("s:loc", namespaces=ns) == f"{base}/help/returns")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", article.findtext("s:lastmod", namespaces=ns) or "")
    for loc in locs:
        page = await kb_client.get(loc.removeprefix(base))
        assert page.status_code == 200, loc
        assert f'<link rel="canonical" href="{loc}">' in page.text, loc
