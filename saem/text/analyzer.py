"""The lexical analyzer: text → search tokens, the same at index time and at query time.

* Text with Hangul goes through Kiwi (kiwipiepy): content morphemes are kept — nouns, verb and
  adjective stems, roots, numbers, Latin words, Hanja — particles and endings are dropped, so
  ``토크나이저는`` and ``토크나이저가`` both give ``토크나이저``. One-syllable verb, adjective and
  adverb stems (``있``, ``되``, ``하``, ``보``, ``쓰``, ``더``, ``잘`` ...) are dropped too: they are
  light or auxiliary verbs and homographs (``쓰`` is both "write" and "use") that match chunks
  on any topic; measured, dropping them lifts lexical MRR@10 on both Korean QA sets.
* Text without Hangul is split into lowercase letter/digit runs (no Kiwi call: it is faster and
  gives the same Latin tokens Kiwi would).
* Latin words, in either kind of text, are reduced to their English Snowball stem (PyStemmer):
  ``configure``, ``configured`` and ``configuration`` all give ``configur``, so a question
  phrased with another form of a word still finds it.
* Fallback: when Kiwi is not installed, or leaves nothing for a text that has Hangul (a query
  made only of particles, say), each Hangul run becomes character bigrams (a one-syllable run
  stays a unigram). So a Hangul query never analyzes to nothing.

    >>> analyze("BERT의 WordPiece 토크나이저는")
    ['bert', 'wordpiec', '토크나이저']

The Kiwi model is built once per process, lazily, on the first Hangul text (≈1–2 s).
``analyze`` is thread-safe and deterministic for a given kiwipiepy version.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["analyze", "analyze_many", "to_fts_text", "to_fts_texts", "has_hangul", "hangul_bigrams"]

_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]+")
# letter runs and digit runs, split apart the way Kiwi splits them inside Hangul text, so a
# token such as "Q4_0" or "GPT2" gives the same tokens in an English and in a Korean sentence
_WORD = re.compile(r"[^\W\d_]+|\d+")
# Kiwi tags whose forms are worth searching for (prefix before any "-R"/"-I" suffix).
_KEEP_TAGS = frozenset({"NNG", "NNP", "NR", "VV", "VA", "XR", "SL", "SN", "SH", "MAG"})
_KEEP_PREFIX = ("W_",)  # URLs, e-mails, hashtags, serials
# Kept tags whose one-syllable Hangul forms are dropped (light verbs, homographs, 더/잘/또).
_SHORT_DROP_TAGS = frozenset({"VV", "VA", "MAG"})

_LATIN = re.compile(r"[a-z]")
_lock = threading.Lock()
_stem_words: Any = None
_kiwi: Any = None
_kiwi_failed = False


def has_hangul(text: str) -> bool:
    return _HANGUL.search(text) is not None


def _get_kiwi() -> Any:
    """The process-wide Kiwi, built on first use; None when kiwipiepy cannot be loaded."""
    global _kiwi, _kiwi_failed
    if _kiwi is not None or _kiwi_failed:
        return _kiwi
    with _lock:
        if _kiwi is None and not _kiwi_failed:
            try:
                from kiwipiepy import Kiwi

                # The typo dictionary serves only typo correction, which saem does not turn on
                # (``typos=None``): the tokens are the same without it, and Kiwi builds in half the time.
                # One worker: ``analyze_many`` runs there, off the GIL, while the embedder has the other core.
                _kiwi = Kiwi(num_workers=1, load_typo_dict=False)
            except Exception:  # ImportError, or a broken model file: fall back to bigrams
                _kiwi_failed = True
    return _kiwi


def hangul_bigrams(text: str) -> list[str]:
    """Character bigrams of every Hangul run (a one-syllable run gives itself)."""
    out: list[str] = []
    for run in _HANGUL.findall(text):
        if len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def _stemmer() -> Any:
    """The English Snowball stemmer's ``stemWords``, built once (PyStemmer instances are not
    thread-safe, so each call gets its own: building one costs ≈ 1 µs)."""
    global _stem_words
    if _stem_words is None:
        import Stemmer

        _stem_words = lambda words: Stemmer.Stemmer("english").stemWords(words)  # noqa: E731
    return _stem_words


def _words(text: str) -> list[str]:
    words = [w.lower() for w in _WORD.findall(text)]
    latin = [i for i, w in enumerate(words) if _LATIN.match(w)]
    if latin:
        stems = _stemmer()([words[i] for i in latin])
        for i, stem in zip(latin, stems, strict=True):
            words[i] = stem
    return words


def _content(tokens: Any) -> list[str]:
    """The search tokens among Kiwi's morphemes (module docstring)."""
    out: list[str] = []
    for tok in tokens:
        tag = str(tok.tag)
        base = tag.split("-", 1)[0]
        if base in _SHORT_DROP_TAGS and len(tok.form) == 1 and has_hangul(tok.form):
            continue
        if base in _KEEP_TAGS or tag.startswith(_KEEP_PREFIX):
            # a form may hold several runs (e.g. "3.14", a URL): keep letter/digit runs only,
            # so FTS5 splits it the same way at index and query time
            out.extend(_words(tok.form))
    return out


def analyze(text: str) -> list[str]:
    """Search tokens of ``text``, in order, with repeats (BM25 needs term frequencies).

    Never raises for any ``str``; returns ``[]`` only for text with no letters or digits.
    """
    if not has_hangul(text):
        return _words(text)
    kiwi = _get_kiwi()
    return _finish(text, _content(kiwi.tokenize(text)) if kiwi is not None else None)


def analyze_many(texts: Sequence[str]) -> list[list[str]]:
    """``[analyze(t) for t in texts]``, with the Hangul texts morphed in one Kiwi batch call.

    Kiwi analyses a batch in its own worker thread without holding the GIL; called once per
    text, it holds the GIL for each call, and an embedder encoding in another thread (which
    needs the GIL between its tensor operations) waits behind every one of them — measured,
    per-text calls beside an encode made it 7x slower; the batch call, 3 %. Ingestion uses this.
    """
    out: list[list[str] | None] = [None if has_hangul(t) else _words(t) for t in texts]
    hangul = [i for i, tokens in enumerate(out) if tokens is None]
    kiwi = _get_kiwi() if hangul else None
    if kiwi is not None:
        for i, morphemes in zip(hangul, kiwi.tokenize([texts[i] for i in hangul]), strict=True):
            out[i] = _finish(texts[i], _content(morphemes))
    else:
        for i in hangul:
            out[i] = _finish(texts[i], None)
    return [tokens if tokens is not None else [] for tokens in out]


def _finish(text: str, tokens: list[str] | None) -> list[str]:
    """Kiwi's ``tokens`` for Hangul ``text`` (None: Kiwi is not available), with the bigram fallback."""
    if tokens is None:
        # no morphology: Latin words plus Hangul bigrams
        tokens = [w for w in _words(_HANGUL.sub(" ", text))] + hangul_bigrams(text)
    if not any(has_hangul(t) for t in tokens):
        tokens = tokens + hangul_bigrams(text)
    return tokens


def to_fts_text(text: str) -> str:
    """What goes into the FTS5 ``tokens`` column: the analyzed tokens joined by spaces."""
    return " ".join(analyze(text))


def to_fts_texts(texts: Sequence[str]) -> list[str]:
    """``[to_fts_text(t) for t in texts]`` through :func:`analyze_many`."""
    return [" ".join(tokens) for tokens in analyze_many(texts)]
