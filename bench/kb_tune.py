"""Tune the knowledge base's fusion weights on the tuning set, and report every set's figures.

    python -m bench.kb_tune [--embedder use|minilm|wordllama|none] [--grid] [--articles DIR] [--sets tune,test]

Without ``--grid`` it prints the figures of the weights in ``knowledge_base/ranking.py``. With ``--grid`` it
searches weights on ``eval-tune.jsonl`` only and prints the best; the test set is then measured once with
them, never searched on.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from knowledge_base.embedders import Embedder, load_embedder
from knowledge_base.evaluation import evaluate, read_cases, score
from knowledge_base.files import read_folder
from knowledge_base.ranking import Doc, RankIndex, Vector, Weights, weights_for
from knowledge_base.render import to_text

DEMO = Path(__file__).resolve().parent.parent / "knowledge_base" / "demo"


def docs_from(folder: Path) -> list[Doc]:
    files, problems = read_folder(folder)
    if problems:
        raise SystemExit("\n".join(problems))
    return [
        Doc(
            article_id=i,
            slug=f.article.slug,
            locale=f.article.locale,
            title=f.article.title,
            body=to_text(f.article.body),
            tags=tuple(f.article.tags),
            phrasings=tuple(f.article.phrasings),
            status=f.article.status.value,
        )
        for i, f in enumerate(files)
        if f.article.status.value != "draft"  # drafts are never ranked
    ]


class Memo:
    """An embedder that remembers every sentence it encoded (the grid asks for the same queries again)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.seen: dict[str, Vector] = {}

    def encode(self, texts: Sequence[str]) -> Vector:
        missing = [t for t in texts if t not in self.seen]
        if missing:
            for t, v in zip(missing, self.inner.encode(missing), strict=True):
                self.seen[t] = v
        return np.stack([self.seen[t] for t in texts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedder", default="use")
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--articles", type=Path, default=DEMO / "articles")
    parser.add_argument("--sets", default="tune,test")
    parser.add_argument("--tune-file", type=Path, default=DEMO / "eval-tune.jsonl")
    args = parser.parse_args()

    started = time.perf_counter()
    loaded_embedder = load_embedder(args.embedder)
    embedder = Memo(loaded_embedder) if loaded_embedder is not None else None
    loaded = time.perf_counter()
    docs = docs_from(args.articles)
    index = RankIndex(docs, embedder)
    built = time.perf_counter()
    print(
        f"embedder {embedder.name if embedder else 'none'}: load {loaded - started:.2f} s, "
        f"index of {len(docs)} articles {built - loaded:.2f} s"
    )
    if args.grid:
        cases = read_cases(args.tune_file)
        best: tuple[float, Weights] | None = None
        if embedder is None:
            grid = [
                Weights(b, q, f, 0.0, 0.0, 0.0)
                for b, q, f in itertools.product((0.0, 0.3, 0.6, 1.0), (0.0, 0.3, 0.6, 1.0), (0.0, 0.2, 0.4, 0.8))
            ]
        else:
            whiten = weights_for(embedder).whiten  # the linear layer is learned when the index is built
            grid = [
                Weights(b, q, f, c, n, 1.0, whiten)
                for b, q, f, c, n in itertools.product(
                    (0.0, 0.15, 0.3, 0.5), (0.0, 0.15, 0.3, 0.5), (0.0, 0.1, 0.2, 0.4), (1.0,), (0.0, 0.3, 0.6, 1.0)
                )
            ]
        for weights in grid:
            index.weights = weights
            s = score(cases, lambda q: [r.doc.slug for r in index.rank(q, limit=10)])
            objective = s.top1 + s.top3 + s.mrr
            if best is None or objective > best[0]:
                best = (objective, weights)
                print(f"  {weights}: top1 {s.top1:.3f} top3 {s.top3:.3f} mrr {s.mrr:.3f}", flush=True)
        assert best is not None
        index.weights = best[1]
        print(f"best on the tuning set: {best[1]}")
    else:
        index.weights = weights_for(embedder)
    for name in args.sets.split(","):
        cases = read_cases(DEMO / f"eval-{name}.jsonl")
        t0 = time.perf_counter()
        result = evaluate(index, cases)
        per = (time.perf_counter() - t0) / len(cases) / 2 * 1000
        line = "  ".join(f"{k} top1 {v.top1:.3f} top3 {v.top3:.3f} mrr {v.mrr:.3f}" for k, v in result.items())
        print(f"{name} ({len(cases)} questions): {line}  [{per:.2f} ms/query]")


if __name__ == "__main__":
    main()
