"""The cross-lingual gate: which Unicode script a text is in, and how the store's chunks split.

    dominant_script("LoRA는 무엇인가요?")                      # "HANGUL"
    script_agreement(query, [top-5 dense texts])              # share in the query's script
    cross_lingual(query, top_texts, shares)                   # the gate of hybrid stage 2

Why a query whose nearest chunks are in another script gets a smaller lexical weight is told in
:mod:`saem.retrieval.hybrid` (stage 2). Pure functions (``script_shares`` reads one session);
thread-safe.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select

from saem.store.catalogue import Chunk

__all__ = ["SCRIPT_WINDOW", "cross_lingual", "dominant_script", "script_agreement", "script_shares"]

_SCRIPT_SAMPLE = 500  # characters of a text looked at to tell its script
SCRIPT_WINDOW = 5  # top dense hits whose script tells a cross-lingual query
_SHARE_SAMPLE = 2000  # chunks sampled to measure the store's mix of scripts
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "FULLWIDTH": "LATIN"}  # Japanese mixes kana and Han


def dominant_script(text: str) -> str | None:
    """The Unicode script of most letters among the first 500 characters of ``text``.

    The first word of the letters' Unicode names (``"HANGUL"``, ``"LATIN"``, ``"CYRILLIC"``,
    ...; kana count as ``"CJK"``); ties go to the script seen first; None without letters.
    """
    counts = Counter(unicodedata.name(ch, "?").split(" ", 1)[0] for ch in text[:_SCRIPT_SAMPLE] if ch.isalpha())
    merged: Counter[str] = Counter()
    for name, n in counts.items():  # insertion order = first seen, kept by most_common on ties
        merged[_SCRIPT_ALIASES.get(name, name)] += n
    return merged.most_common(1)[0][0] if merged else None


def script_agreement(query: str, texts: Sequence[str]) -> float | None:
    """The share of ``texts`` whose :func:`dominant_script` is the query's; None when the
    query has no letters or ``texts`` is empty (nothing to compare)."""
    script = dominant_script(query)
    if script is None or not texts:
        return None
    return sum(dominant_script(t) == script for t in texts) / len(texts)


def script_shares(s: Any, sample: int = _SHARE_SAMPLE) -> dict[str | None, float]:
    """The share of each :func:`dominant_script` among the store's chunks (an even sample of at
    most ``sample`` of them, by id; one indexed read)."""
    n = int(s.execute(select(func.count()).select_from(Chunk)).scalar_one())
    if n == 0:
        return {}
    step = max(1, n // sample)
    texts = s.execute(
        select(func.substr(Chunk.text, 1, _SCRIPT_SAMPLE)).where(Chunk.id % step == 0).limit(sample)
    ).scalars()
    counts = Counter(dominant_script(t) for t in texts)
    total = sum(counts.values())
    return {script: c / total for script, c in counts.items()} if total else {}


def cross_lingual(
    query: str, top_texts: Sequence[str], shares: Mapping[str | None, float]
) -> tuple[float, float] | None:
    """``(agreement, store share)`` when ``query`` is cross-lingual, else None: its script holds
    under half of ``top_texts`` (the top dense hits) and less of them than of the store's
    chunks (``shares``, from :func:`script_shares`). None for a query without letters."""
    agreement = script_agreement(query, top_texts)
    store_share = shares.get(dominant_script(query), 0.0)
    if agreement is None or agreement >= 0.5 or agreement > store_share:
        return None
    return agreement, store_share
