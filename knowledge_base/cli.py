"""``switchboard kb ...``: import and export articles as Markdown files, and measure the ranking."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hub.config import Settings, get_settings

if TYPE_CHECKING:
    from knowledge_base.evaluation import Case, Scores
    from knowledge_base.files import ArticleFile

kb_app = typer.Typer(help="The knowledge base: import, export, measure the ranking.", no_args_is_help=True)


def _migrate(settings: Settings) -> None:
    from hub.commands import migrate_or_exit

    migrate_or_exit(settings)


@kb_app.command("import")
def import_articles(
    folder: Annotated[Path, typer.Argument(help="Folder of Markdown files with YAML front matter.")],
) -> None:
    """Import every .md file under FOLDER: the file name is the slug; an article already there (same slug and
    locale) is updated as a new version. A file that cannot be read is reported and skipped (exit code 1)."""
    from knowledge_base.files import read_folder

    if not folder.is_dir():
        typer.echo(f"error: {folder} is not a folder", err=True)
        raise typer.Exit(2)
    files, problems = read_folder(folder)
    for problem in problems:
        typer.echo(f"skipped {problem}", err=True)
    settings = get_settings()
    _migrate(settings)
    counts = asyncio.run(_import(settings, files))
    summary = ", ".join(f"{n} {what}" for what, n in counts.items())
    typer.echo(f"{len(files)} articles read from {folder}: {summary}; {len(problems)} files skipped")
    if problems:
        raise typer.Exit(1)


async def _import(settings: Settings, files: list[ArticleFile]) -> dict[str, int]:
    from hub.runtime import standalone
    from knowledge_base import service

    counts = {"created": 0, "updated": 0, "unchanged": 0}
    async with standalone(settings) as rt:
        with typer.progressbar(files, label="importing", show_pos=True, file=None) as bar:
            for item in bar:
                _, outcome = await service.upsert_article(rt, data=item.article, source="import")
                counts[outcome] += 1
    return counts


@kb_app.command("export")
def export_articles(
    folder: Annotated[Path, typer.Argument(help="Folder to write the Markdown files to (created if missing).")],
) -> None:
    """Write every article (every status and locale) to FOLDER in the format `kb import` reads."""
    settings = get_settings()
    _migrate(settings)
    written = asyncio.run(_export(settings, folder))
    typer.echo(f"{written} articles written to {folder}")


async def _export(settings: Settings, folder: Path) -> int:
    from hub.runtime import standalone
    from knowledge_base import service
    from knowledge_base.files import file_path, render_article
    from knowledge_base.models import ArticleCreate

    async with standalone(settings) as rt:
        articles = await service.all_articles(rt)
    for article in articles:
        data = ArticleCreate.model_validate(article.model_dump())
        path = file_path(folder, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_article(data), encoding="utf-8")
    return len(articles)


@kb_app.command("eval")
def eval_ranking(
    file: Annotated[Path, typer.Argument(help='JSON Lines of {"query": ..., "expected": article slug}.')],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    articles: Annotated[
        Path | None, typer.Option(help="Rank the articles of this folder instead of the database's.")
    ] = None,
    embedder: Annotated[
        str | None, typer.Option(help="auto, use, minilm, wordllama or none (default: SWITCHBOARD_KB_EMBEDDER).")
    ] = None,
) -> None:
    """Top-1 and top-3 accuracy and mean reciprocal rank of Switchboard's ranking and of plain BM25."""
    from hub.errors import SwitchboardError
    from knowledge_base.evaluation import read_cases

    settings = get_settings()
    try:
        cases = read_cases(file)
    except SwitchboardError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    if articles is None:
        _migrate(settings)
    result, used, count = asyncio.run(_eval(settings, cases, articles, embedder or settings.kb_embedder))
    if count == 0:
        typer.echo("error: there are no published or internal articles to rank", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps({name: scores.as_dict() for name, scores in result.items()}))
        return
    typer.echo(f"{len(cases)} questions, {count} articles, embedder: {used or 'none (words alone)'}")
    typer.echo(f"{'ranking':<12} {'top-1':>7} {'top-3':>7} {'MRR':>7}")
    for name, scores in result.items():
        typer.echo(f"{name:<12} {scores.top1:>7.1%} {scores.top3:>7.1%} {scores.mrr:>7.3f}")
    base, ours = result["bm25"], result["switchboard"]
    typer.echo(
        f"margin over BM25: top-1 {100 * (ours.top1 - base.top1):+.1f} points, "
        f"top-3 {100 * (ours.top3 - base.top3):+.1f} points, MRR {ours.mrr - base.mrr:+.3f}"
    )


async def _eval(
    settings: Settings, cases: list[Case], folder: Path | None, embedder_name: str
) -> tuple[dict[str, Scores], str | None, int]:
    from knowledge_base.evaluation import evaluate
    from knowledge_base.ranking import Doc, RankIndex
    from knowledge_base.suggest import embedder_for

    docs: list[Doc]
    if folder is not None:
        from knowledge_base.files import read_folder
        from knowledge_base.render import to_text

        files, problems = read_folder(folder)
        for problem in problems:
            typer.echo(f"skipped {problem}", err=True)
        docs = [
            Doc(i, f.article.slug, f.article.locale, f.article.title, to_text(f.article.body),
                tuple(f.article.tags), tuple(f.article.phrasings), status=f.article.status.value)
            for i, f in enumerate(files)
            if f.article.status.value != "draft"
        ]  # fmt: skip
    else:
        from hub.runtime import standalone
        from knowledge_base import service

        async with standalone(settings) as rt:
            docs = await service.ranking_docs(rt)
    embedder = await asyncio.to_thread(embedder_for, embedder_name)
    index = await asyncio.to_thread(RankIndex, docs, embedder)
    return evaluate(index, cases), (embedder.name if embedder else None), len(docs)
