"""Ranking articles for a customer's words: lexical scores (BM25 with typo correction, rapidfuzz) fused with
sentence-embedding scores, learned from each article's phrasings ("also asked as") and agents' feedback.

Pure and in memory: ``RankIndex`` is built from ``Doc`` values and answers ``rank(query)``. Nothing here
touches the database (``suggest.py`` keeps an index per process up to date with the articles).

The score of an article for a query is a weighted sum (weights in ``Weights``, tuned on
``knowledge_base/demo/eval-tune.jsonl`` by ``python -m bench.kb_tune``; the test set is never used for tuning):

- ``bm25``: Okapi BM25 over title, tags, phrasings and body, divided by the query's best score (0..1);
- ``questions``: BM25 over the title and phrasings alone, likewise divided;
- ``fuzzy``: rapidfuzz's token-set ratio of the query against the closest phrasing or title (0..1), computed
  for the lexical and semantic front-runners only (a scan of every article would cost ~1 µs each);
- ``centroid``: cosine of the query with the mean of the article's title and phrasing embeddings;
- ``nearest``: cosine with the closest single phrasing or title;
- ``negative``: minus the cosine with the closest wording an agent marked "not helpful" for the article,
  counted above a threshold only.

The cosines of ``centroid`` and ``nearest`` are taken after a light linear layer learned from the articles'
own wordings when the index is built (``Weights.whiten``, see ``within_class_projection``): directions in
which the phrasings of one article differ among themselves (how a question is put rather than what it asks)
count less. On the tuning set, with ``use``: top-3 89.8 % → 91.7 %, MRR 0.847 → 0.858.

Without an embedder the embedding terms are absent and the lexical weights of ``LEXICAL_WEIGHTS`` apply.
"""

from __future__ import annotations

import copy
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

from knowledge_base.embedders import Embedder

Vector = npt.NDArray[np.float32]

_WORD = re.compile(r"\w+", re.UNICODE)
# Words that say nothing about which article is meant. Kept short: "not", "no", "never" carry meaning here
# ("does not turn on").
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being am do does did
    i me my mine we our you your u it its this that these those there here he she they them their his her
    what which who whom how when where why can could would should will shall may might must have has had
    please pls hi hello hey thanks thank just so very too also any some all about into out up down off over
    again still yet than then now get got im ive id dont cant""".split()
)


def fold(text: str) -> str:
    """Lower case without accents (``Rückgabe`` → ``ruckgabe``)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def stem(word: str) -> str:
    """A light English suffix stripper: plurals, -ing/-ed and a final e, so "returns", "returned",
    "returning" meet, and so do "descale" and "descaling"."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: len(word) - len(suffix)] + keep
            break
    return word[:-1] if word.endswith("e") and len(word) >= 5 else word


def tokens(text: str) -> list[str]:
    """The stemmed content words of ``text``."""
    return [stem(w) for w in _WORD.findall(fold(text)) if w not in STOPWORDS and not w.isdigit()]


@dataclass(frozen=True, slots=True)
class Doc:
    """What the ranker knows of one article (one locale of it)."""

    article_id: int
    slug: str
    locale: str
    title: str
    body: str  # plain text
    tags: tuple[str, ...] = ()
    phrasings: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()  # customer wordings agents marked "not helpful" for this article
    status: str = "published"


@dataclass(frozen=True, slots=True)
class Weights:
    bm25: float
    questions: float
    fuzzy: float
    centroid: float
    nearest: float
    negative: float
    # The linear layer's regularisation, in units of the mean within-article variance (0: no layer).
    whiten: float = 0.0


# Tuned per embedder with bench/kb_tune.py on eval-tune.jsonl (figures in the README's knowledge-base section).
# ``negative`` is not tuned (the eval sets carry no feedback): a wording an agent rejected costs the article a
# full point, more than the usual gap between the first and second article.
EMBEDDING_WEIGHTS = {
    "use": Weights(bm25=0.5, questions=0.0, fuzzy=0.1, centroid=1.0, nearest=1.0, negative=1.0, whiten=20.0),
    "minilm": Weights(bm25=0.15, questions=0.0, fuzzy=0.1, centroid=1.0, nearest=1.0, negative=1.0),
}
LEXICAL_WEIGHTS = Weights(bm25=0.3, questions=0.6, fuzzy=0.8, centroid=0.0, nearest=0.0, negative=0.0)
NEGATIVE_THRESHOLD = 0.8  # a rejected wording counts against an article only when the query is this close to it
FRONT_RUNNERS = 30  # articles that get the fuzzy score
CANDIDATES = 200  # in a large knowledge base, articles compared with each of their phrasings (twice this)


def within_class_projection(groups: Sequence[Vector], strength: float) -> Vector | None:
    """The light linear layer, learned from the articles' own sentences: ``(Sw + λI)⁻¹``, where ``Sw`` is the
    scatter of each article's title and phrasings around their mean and ``λ`` is ``strength`` times its mean
    eigenvalue. Sentences are multiplied by it before their cosines are taken. None when no article has two
    sentences (nothing to learn from)."""
    deviations = [g - g.mean(axis=0) for g in groups if len(g) > 1]
    if not deviations or strength <= 0:
        return None
    x = np.vstack(deviations).astype(np.float64)
    scatter = (x.T @ x) / len(x)
    lam = strength * float(np.trace(scatter)) / scatter.shape[0]
    if lam <= 0:
        return None
    values, vectors = np.linalg.eigh(scatter)
    return ((vectors / (values + lam)) @ vectors.T).astype(np.float32)


def _unit_rows(matrix: Vector) -> Vector:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def weights_for(embedder: Embedder | None) -> Weights:
    """The tuned weights of ``embedder`` (those of ``use`` for one not tuned; the lexical ones for none)."""
    if embedder is None:
        return LEXICAL_WEIGHTS
    return EMBEDDING_WEIGHTS.get(embedder.name, EMBEDDING_WEIGHTS["use"])


class Bm25:
    """Okapi BM25 over a list of token lists, scored into a dense array (k1=1.2, b=0.75)."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.n = len(documents)
        self.lengths = np.array([len(d) for d in documents], dtype=np.float32)
        self.avg = float(self.lengths.mean()) if self.n else 0.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for position, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                postings.setdefault(term, []).append((position, count))
        norm = self.k1 * (1 - self.b + self.b * self.lengths / (self.avg or 1.0))
        self.postings: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
        for term, rows in postings.items():
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            tf = np.array([r[1] for r in rows], dtype=np.float32)
            idf = math.log(1 + (self.n - len(rows) + 0.5) / (len(rows) + 0.5))
            self.postings[term] = (ids, (idf * tf * (self.k1 + 1) / (tf + norm[ids])).astype(np.float32))

    def extended(self, documents: Sequence[Sequence[str]]) -> Bm25:
        """A copy with ``documents`` appended (positions from ``n`` on). Their weights use the document
        frequencies and mean length as they are now, and the rows already scored keep theirs: close to a
        rebuild for a few documents among many, at the cost of the changed documents' terms only."""
        new = copy.copy(self)
        lengths = np.array([len(d) for d in documents], dtype=np.float32)
        new.lengths = np.concatenate([self.lengths, lengths])
        new.n = self.n + len(documents)
        norm = self.k1 * (1 - self.b + self.b * lengths / (self.avg or 1.0))
        added: dict[str, list[tuple[int, int]]] = {}
        for offset, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                added.setdefault(term, []).append((offset, count))
        new.postings = dict(self.postings)
        for term, rows in added.items():
            ids = np.array([self.n + r[0] for r in rows], dtype=np.int64)
            tf = np.array([r[1] for r in rows], dtype=np.float32)
            old_ids, old_weights = self.postings.get(term, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
            df = len(old_ids) + len(rows)
            idf = math.log(1 + (new.n - df + 0.5) / (df + 0.5))
            weights = (idf * tf * (self.k1 + 1) / (tf + norm[ids - self.n])).astype(np.float32)
            new.postings[term] = (np.concatenate([old_ids, ids]), np.concatenate([old_weights, weights]))
        return new

    def scores(self, query: Iterable[str]) -> Vector:
        out = np.zeros(self.n, dtype=np.float32)
        for term in query:
            hit = self.postings.get(term)
            if hit is not None:
                out[hit[0]] += hit[1]
        return out


def _scaled(scores: Vector) -> Vector:
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 0 else scores


Prepared = tuple[list[str], list[str], list[str]]


class Rows:
    """A matrix that grows by appending rows without copying the rows it has: ``matrix`` is a view of the first
    ``n`` rows of a larger buffer. ``appended`` writes after them and answers a new ``Rows``; this one (and
    any reader of its view) still sees its ``n`` rows, which never change. Only the newest of the ``Rows``
    sharing a buffer may append in place (the buffer's ``used`` count says which); any other copies."""

    def __init__(self, matrix: Vector, *, _buffer: Vector | None = None, _used: list[int] | None = None) -> None:
        self.n = len(matrix)
        self._buffer = matrix if _buffer is None else _buffer
        self._used = [self.n] if _used is None else _used
        self.matrix = self._buffer[: self.n]

    @classmethod
    def with_room(cls, matrix: Vector) -> Rows:
        """``matrix``'s rows, with room after them for about an eighth more."""
        n = len(matrix)
        buffer = np.empty((n + n // 8 + 64, matrix.shape[1]), dtype=np.float32)
        buffer[:n] = matrix
        return cls(buffer[:n], _buffer=buffer)

    def appended(self, rows: Vector) -> Rows:
        total = self.n + len(rows)
        buffer, used = self._buffer, self._used
        if used[0] != self.n or total > len(buffer):
            buffer = np.empty((max(total, self.n + self.n // 4 + 64), rows.shape[1]), dtype=np.float32)
            buffer[: self.n] = self.matrix
            used = [self.n]
        buffer[self.n : total] = rows
        used[0] = total
        return Rows(buffer[:total], _buffer=buffer, _used=used)


class RankCache:
    """What ``RankIndex`` computed per article (its terms, its folded sentences) and per sentence (its
    embedding), kept from one build to the next."""

    def __init__(self) -> None:
        self.vectors: dict[str, Vector] = {}
        self._docs: dict[Doc, Prepared] = {}
        # per article and embedder: its sentences' vectors (a matrix) and their normalised mean
        self._embedded: dict[tuple[str, Doc], tuple[Vector, Vector]] = {}

    def embedded(self, docs: Sequence[Doc], embedder: Embedder, *, forget: bool = True) -> list[tuple[Vector, Vector]]:
        """Each article's sentence vectors and centroid, embedding only the sentences not seen before; with
        ``forget``, articles not among ``docs`` are forgotten (a full build)."""
        old = self._embedded
        fresh = {} if forget else old
        missing = [d for d in docs if (embedder.name, d) not in old]
        texts = list(dict.fromkeys(t for d in missing for t in (d.title, *d.phrasings) if t not in self.vectors))
        for start in range(0, len(texts), 256):
            batch = texts[start : start + 256]
            for text, vector in zip(batch, embedder.encode(batch), strict=True):
                self.vectors[text] = vector
        for d in docs:
            key = (embedder.name, d)
            item = old.get(key)
            if item is None:
                matrix = np.stack([self.vectors[t] for t in (d.title, *d.phrasings)])
                mean = matrix.sum(axis=0)
                norm = float(np.linalg.norm(mean)) or 1.0
                item = (matrix, (mean / norm).astype(np.float32))
            fresh[key] = item
        self._embedded = fresh
        return [fresh[(embedder.name, d)] for d in docs]

    def prepare(self, docs: Sequence[Doc], *, forget: bool = True) -> list[Prepared]:
        """Each article's terms and folded sentences; with ``forget``, articles not among ``docs`` are
        forgotten (a full build)."""
        old = self._docs
        fresh = {} if forget else old
        for d in docs:
            item = old.get(d)
            if item is None:
                item = (
                    tokens(" ".join((d.title, d.title, " ".join(d.tags), *d.phrasings, d.body))),
                    tokens(" ".join((d.title, *d.phrasings))),
                    [fold(x) for x in (d.title, *d.phrasings)],
                )
            fresh[d] = item
        self._docs = fresh
        return [fresh[d] for d in docs]


@dataclass(slots=True)
class Ranked:
    doc: Doc
    score: float
    parts: dict[str, float] = field(default_factory=dict)


class RankIndex:
    """An immutable ranking index over ``docs``. ``updated`` gives a new one with some articles changed, at the
    cost of those articles: their old rows are masked (``dead``) and their new versions appended. A full build
    (re-using the cache's terms and embeddings) starts afresh."""

    def __init__(
        self,
        docs: Sequence[Doc],
        embedder: Embedder | None = None,
        *,
        weights: Weights | None = None,
        cache: RankCache | None = None,
    ) -> None:
        """``cache`` keeps what was computed for each article and sentence across rebuilds, so a rebuild
        after one article changed tokenizes and embeds only that article."""
        self.docs = list(docs)
        self.embedder = embedder
        self.weights = weights or weights_for(embedder)
        self.cache = cache if cache is not None else RankCache()
        prepared = self.cache.prepare(self.docs)
        full = [p[0] for p in prepared]
        self.bm25 = Bm25(full)
        self.questions = Bm25([p[1] for p in prepared])
        self.vocabulary = sorted({t for doc in full for t in doc})
        self._known = frozenset(self.vocabulary)
        self.sentences = [(d.title, *d.phrasings) for d in self.docs]
        self.folded = [p[2] for p in prepared]
        # Each article's sentences are contiguous in phrase_vectors, starting here (every article has a title).
        self.starts = np.cumsum([0] + [len(g) for g in self.sentences[:-1]]).astype(np.int64)
        self.ends = self.starts + np.array([len(g) for g in self.sentences], dtype=np.int64)
        self.centroids: Vector | None = None
        self.phrase_vectors: Vector | None = None
        self._centroid_rows: Rows | None = None
        self._phrase_rows: Rows | None = None
        self.projection: Vector | None = None  # the linear layer (``within_class_projection``)
        self.rejected_vectors: Vector | None = None
        self.rejected_owner: npt.NDArray[np.int64] | None = None
        # Rows of articles changed or removed since the full build (``updated``), and the row of each article.
        self.dead: npt.NDArray[np.int64] | None = None
        self.appended = 0
        self.rows = {d.article_id: i for i, d in enumerate(self.docs)}
        if embedder is not None and self.docs:
            self._embed(embedder)

    @property
    def live(self) -> int:
        """How many articles the index ranks."""
        return len(self.docs) - (len(self.dead) if self.dead is not None else 0)

    def updated(self, changed: Sequence[Doc], removed: Iterable[int] = ()) -> RankIndex:
        """A new index where the articles of ``changed`` (new ones, or new versions) are ranked as they are now
        and the articles ``removed`` (ids) are not ranked at all. This one is left as it was (readers may be
        using it). Costs the changed articles' terms and sentences, not a rebuild: their old rows are masked and
        the new ones appended, weighted with the term statistics of the full build (``appended`` says how many
        rows were added since; a full build, from time to time, starts afresh)."""
        changed, removed = list(changed), set(removed)
        if not self.docs:
            return RankIndex(changed, self.embedder, weights=self.weights, cache=self.cache)
        new = copy.copy(self)
        gone = [self.rows[a] for a in {*removed, *(d.article_id for d in changed)} if a in self.rows]
        new.rows = dict(self.rows)
        for article_id in removed:
            new.rows.pop(article_id, None)
        if gone:
            dead = np.array(gone, dtype=np.int64)
            new.dead = dead if self.dead is None else np.union1d(self.dead, dead)
        if not changed:
            return new
        first = len(self.docs)
        prepared = self.cache.prepare(changed, forget=False)
        new.docs = [*self.docs, *changed]
        new.appended = self.appended + len(changed)
        for offset, d in enumerate(changed):
            new.rows[d.article_id] = first + offset
        new.bm25 = self.bm25.extended([p[0] for p in prepared])
        new.questions = self.questions.extended([p[1] for p in prepared])
        unknown = {t for p in prepared for t in p[0]} - self._known
        if unknown:
            new.vocabulary = sorted([*self.vocabulary, *unknown])
            new._known = frozenset(new.vocabulary)
        sentences = [(d.title, *d.phrasings) for d in changed]
        new.sentences = [*self.sentences, *sentences]
        new.folded = [*self.folded, *(p[2] for p in prepared)]
        sizes = np.array([len(g) for g in sentences], dtype=np.int64)
        base = int(self.ends[-1]) if len(self.ends) else 0  # the sentence rows so far
        starts = base + np.cumsum(np.concatenate([[0], sizes[:-1]])).astype(np.int64)
        new.starts = np.concatenate([self.starts, starts]).astype(np.int64)
        new.ends = np.concatenate([self.ends, starts + sizes]).astype(np.int64)
        if self.embedder is not None and self._centroid_rows is not None and self._phrase_rows is not None:
            embedded = self.cache.embedded(changed, self.embedder, forget=False)
            phrases, centroids = self._projected(embedded)  # the layer of the full build
            new._centroid_rows = self._centroid_rows.appended(centroids)
            new._phrase_rows = self._phrase_rows.appended(phrases)
            new.centroids, new.phrase_vectors = new._centroid_rows.matrix, new._phrase_rows.matrix
            new._embed_rejected(self.embedder)
        return new

    def _vectors(self, embedder: Embedder, texts: Sequence[str]) -> Vector:
        vectors = self.cache.vectors
        missing = list(dict.fromkeys(t for t in texts if t not in vectors))
        for start in range(0, len(missing), 256):
            batch = missing[start : start + 256]
            for text, vector in zip(batch, embedder.encode(batch), strict=True):
                vectors[text] = vector
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([vectors[t] for t in texts])

    def _embed(self, embedder: Embedder) -> None:
        embedded = self.cache.embedded(self.docs, embedder)
        matrices = [matrix for matrix, _ in embedded]
        self.projection = within_class_projection(matrices, self.weights.whiten)
        phrases, centroids = self._projected(embedded)
        self._centroid_rows = Rows.with_room(centroids)
        # each article's sentences are contiguous rows, from self.starts
        self._phrase_rows = Rows.with_room(phrases)
        self.centroids, self.phrase_vectors = self._centroid_rows.matrix, self._phrase_rows.matrix
        self._embed_rejected(embedder)

    def _projected(self, embedded: Sequence[tuple[Vector, Vector]]) -> tuple[Vector, Vector]:
        """The articles' sentence rows and centroids through the linear layer (as embedded without one)."""
        phrases = np.vstack([matrix for matrix, _ in embedded])
        if self.projection is None:
            return phrases, np.stack([centroid for _, centroid in embedded])
        phrases = _unit_rows(phrases @ self.projection)
        starts = np.cumsum([0] + [len(m) for m, _ in embedded[:-1]]).astype(np.int64)
        return phrases, _unit_rows(np.add.reduceat(phrases, starts, axis=0))

    def _embed_rejected(self, embedder: Embedder) -> None:
        dead = set(self.dead.tolist()) if self.dead is not None else set()
        rejected = [(i, text) for i, d in enumerate(self.docs) if i not in dead for text in d.rejected]
        self.rejected_vectors = self.rejected_owner = None
        if rejected:
            self.rejected_vectors = self._vectors(embedder, [t for _, t in rejected])
            self.rejected_owner = np.array([i for i, _ in rejected], dtype=np.int64)

    def query_terms(self, query: str) -> list[str]:
        """The query's terms, each unknown one replaced by the closest known term (a typo) or by the known
        terms it starts (a word still being typed)."""
        out: list[str] = []
        for term in tokens(query):
            if term in self._known or len(term) < 3:
                out.append(term)
                continue
            if len(term) >= 4:
                match = process.extractOne(term, self.vocabulary, scorer=fuzz.ratio, score_cutoff=80)
                if match is not None:
                    out.append(match[0])
                    continue
            start = _bisect_prefix(self.vocabulary, term)
            out.extend(self.vocabulary[start : start + 3])
        return out

    def rank(
        self, query: str, *, limit: int = 5, bm25_only: bool = False, statuses: frozenset[str] | None = None
    ) -> list[Ranked]:
        """The best ``limit`` articles for ``query`` (in one of ``statuses``, when given), best first, one per
        slug."""
        if not self.docs:
            return []
        dead = self.dead
        if bm25_only:
            raw = self.bm25.scores(tokens(query))
            if dead is not None:
                raw[dead] = 0.0
            order = np.argsort(-raw, kind="stable")
            return self._collapse(order, raw, {}, limit, keep_zero=False, statuses=statuses)
        w = self.weights
        terms = self.query_terms(query)
        bm25_raw, questions_raw = self.bm25.scores(terms), self.questions.scores(terms)
        if dead is not None:
            bm25_raw[dead] = questions_raw[dead] = 0.0
        bm25 = _scaled(bm25_raw)
        questions = _scaled(questions_raw)
        total = w.bm25 * bm25 + w.questions * questions
        parts: dict[str, Vector] = {"bm25": bm25, "questions": questions}
        if self.embedder is not None and self.centroids is not None and self.phrase_vectors is not None:
            raw = self.embedder.encode([query])[0]
            q = raw if self.projection is None else _unit_rows((raw @ self.projection)[None, :])[0]
            centroid = self.centroids @ q
            if dead is not None:
                centroid[dead] = -1.0  # the lowest cosine: never a front-runner
            total = total + w.centroid * centroid
            nearest = np.full(len(self.docs), -1.0, dtype=np.float32)
            if len(self.docs) <= 2 * CANDIDATES:
                nearest[:] = np.maximum.reduceat(self.phrase_vectors @ q, self.starts)
            else:
                # Every phrasing of every article is the costliest product (10,000 articles: 60,000 rows): only
                # the front-runners by the other scores, and by their centroid alone, get it.
                picked = np.union1d(_top(total, CANDIDATES), _top(centroid, CANDIDATES))
                # Their rows, without a Python loop over the ~400 picked (a fifth of a ranking's CPU time when
                # it was one): each picked article's rows start at ``firsts`` in ``rows``, so row k of it is
                # k + (its start - its first).
                sizes = self.ends[picked] - self.starts[picked]
                firsts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
                rows = np.repeat(self.starts[picked] - firsts, sizes) + np.arange(int(sizes.sum()))
                nearest[picked] = np.maximum.reduceat(self.phrase_vectors[rows] @ q, firsts)
            total = total + w.nearest * nearest
            parts |= {"centroid": centroid, "nearest": nearest}
            if self.rejected_vectors is not None and self.rejected_owner is not None and w.negative:
                close = self.rejected_vectors @ raw  # rejected wordings compare as embedded (the threshold's scale)
                penalty = np.zeros(len(self.docs), dtype=np.float32)
                np.maximum.at(penalty, self.rejected_owner, np.where(close >= NEGATIVE_THRESHOLD, close, 0.0))
                total = total - w.negative * penalty
                parts["negative"] = -penalty
        if dead is not None:
            total[dead] = -np.inf
        if w.fuzzy:
            runners = _top(total, FRONT_RUNNERS)
            fuzzy = np.zeros(len(self.docs), dtype=np.float32)
            text = fold(query)
            for i in runners:
                best = process.extractOne(text, self.folded[i], scorer=fuzz.token_set_ratio)
                fuzzy[i] = (best[1] if best else 0.0) / 100.0
            total = total + w.fuzzy * fuzzy
            parts["fuzzy"] = fuzzy
        # The best few in order (a full sort of 10,000 scores costs more than the rest of the arithmetic); all of
        # them only when filters and repeated slugs leave fewer than ``limit``.
        keep_zero = self.embedder is not None
        front = _top(total, 4 * limit + 64)
        order = front[np.argsort(-total[front], kind="stable")]
        out = self._collapse(order, total, parts, limit, keep_zero=keep_zero, statuses=statuses)
        if len(out) < limit and len(order) < len(total):
            order = np.argsort(-total, kind="stable")
            out = self._collapse(order, total, parts, limit, keep_zero=keep_zero, statuses=statuses)
        return out

    def _collapse(
        self,
        order: npt.NDArray[np.int64],
        total: Vector,
        parts: dict[str, Vector],
        limit: int,
        *,
        keep_zero: bool,
        statuses: frozenset[str] | None,
    ) -> list[Ranked]:
        out: list[Ranked] = []
        seen: set[str] = set()
        for i in order:
            if (not keep_zero and total[i] <= 0) or total[i] == -np.inf:
                break
            doc = self.docs[i]
            if doc.slug in seen or (statuses is not None and doc.status not in statuses):
                continue
            seen.add(doc.slug)
            out.append(Ranked(doc, float(total[i]), {k: round(float(v[i]), 4) for k, v in parts.items()}))
            if len(out) == limit:
                break
        return out


def _top(scores: Vector, k: int) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` highest scores, in increasing index order (so that a stable sort by score breaks
    ties as a full sort would)."""
    if len(scores) <= k:
        return np.arange(len(scores))
    return np.sort(np.argpartition(-scores, k)[:k])


def _bisect_prefix(words: Sequence[str], prefix: str) -> int:
    """Index of the first word that starts with ``prefix`` in sorted ``words`` (len(words) if none)."""
    import bisect

    i = bisect.bisect_left(words, prefix)
    return i if i < len(words) and words[i].startswith(prefix) else len(words)
