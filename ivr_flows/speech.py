"""Tolerant matching of what a caller said against a menu's words.

Speech recognition mishears ("billings", "bill in"), callers add words ("I want to talk about billing please")
and drop accents ("espanol"). A phrase of n words is compared with every run of n consecutive words of the
utterance (rapidfuzz's ``ratio`` on accent-free, lower-cased text), so short words cannot match inside longer
ones ("no" is not found in "know"). The best choice wins when it reaches the threshold and no other choice
comes within ``MARGIN`` of it: "billing or sales" is ambiguous and asked again rather than guessed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

MARGIN = 5.0
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """Lower-case words without accents or punctuation, one space apart."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", plain).strip()


@dataclass(frozen=True, slots=True)
class Phrase:
    choice: int  # index of the choice it selects
    text: str  # normalized
    words: int


def phrases(choices: Iterable[tuple[int, Iterable[str]]]) -> tuple[Phrase, ...]:
    """Each choice's words, normalized once (flows cache the result per menu and language)."""
    out = []
    for index, words in choices:
        for w in words:
            text = normalize(w)
            if text:
                out.append(Phrase(index, text, text.count(" ") + 1))
    return tuple(out)


def match(utterance: str, candidates: Sequence[Phrase], *, threshold: float) -> int | None:
    """The index of the choice the utterance names, or None (nothing close enough, or two choices alike)."""
    tokens = normalize(utterance).split()
    if not tokens:
        return None
    best: dict[int, float] = {}
    windows: dict[int, list[str]] = {}
    for phrase in candidates:
        runs = windows.get(phrase.words)
        if runs is None:
            n = min(phrase.words, len(tokens))
            runs = windows[phrase.words] = [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        score = max(fuzz.ratio(phrase.text, run) for run in runs)
        if score > best.get(phrase.choice, -1.0):
            best[phrase.choice] = score
    ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)
    if not ranked or ranked[0][1] < threshold:
        return None
    if len(ranked) > 1 and ranked[1][1] >= threshold and ranked[0][1] - ranked[1][1] < MARGIN:
        return None
    return ranked[0][0]


def spoken_key(utterance: str, keys: Iterable[str | None]) -> str | None:
    """A key said as a digit ("two" is often transcribed "2"): the one key of the menu the utterance names."""
    said = {t for t in normalize(utterance).split() if len(t) == 1 and t.isdigit()}
    named = [k for k in keys if k is not None and k in said]
    return named[0] if len(named) == 1 else None


def spoken_digits(utterance: str) -> str | None:
    """Digits read out ("4 4 1 1", "44-11"), or None when the utterance has anything else."""
    text = utterance.strip().rstrip(".")
    if not text or not re.fullmatch(r"[0-9][0-9 \-.]*", text):
        return None
    return re.sub(r"[^0-9]", "", text)


# Words for yes and no when a collect reads a number back (keys: 1 yes, 2 no), by language.
YES = {
    "en": ("yes", "yeah", "yep", "correct", "right", "that is right", "that's right"),
    "es": ("sí", "correcto", "es correcto", "claro"),
    "fr": ("oui", "correct", "c'est ça"),
    "de": ("ja", "richtig", "genau"),
    "pt": ("sim", "correto", "certo"),
    "it": ("sì", "giusto", "corretto"),
}
NO = {
    "en": ("no", "nope", "wrong", "incorrect", "not right"),
    "es": ("no", "incorrecto", "no es correcto"),
    "fr": ("non", "incorrect"),
    "de": ("nein", "falsch"),
    "pt": ("não", "errado"),
    "it": ("no", "sbagliato"),
}


def yes_no_phrases(locale: str) -> tuple[Phrase, ...]:
    """Yes (choice 1) and no (choice 0) in the locale's language, and in English."""
    base = locale.split("-")[0].lower()
    return phrases([(1, YES.get(base, ()) + YES["en"]), (0, NO.get(base, ()) + NO["en"])])


def yes_no_words(locale: str) -> tuple[str, ...]:
    base = locale.split("-")[0].lower()
    return tuple(dict.fromkeys(YES.get(base, ()) + NO.get(base, ()) + YES["en"] + NO["en"]))
