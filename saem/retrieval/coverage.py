"""Key terms of a question that the corpus never mentions — a cheap, explainable abstention signal.

    with catalogue.read() as session:
        missing_terms(session, "How does FlashAttention reduce GPU memory?")   # ['FlashAttention']

Similarity scores do not separate an unanswerable question from an answerable one when both
are on the corpus's topic ("KV 캐시는 …?" over notes on tokenizers scores as high as a real
question). Names do: a question about *Chinchilla* or *FlashAttention* over documents that never
write those words cannot be answered from them, in any language.

A **key term** is a Latin-script word of the question that looks like a name rather than a
common word: an acronym (``BERT``, ``KV``), a word with an inner capital (``FlashAttention``,
``LoRA``), a word with digits (``GPT-2``, ``Q3_K_S``), a dotted or underscored identifier
(``typing.override``, ``lru_cache``: every part at least two characters), a command-line option
(``--disable-gil``), or — in a question written in Korean — any capitalised Latin word
(``Chinchilla``). In an English question a capitalised word is not enough
(``Hangul``, ``Hanbit Media``): the documents may be Korean and write it in Hangul. A key term is
**missing** when no chunk holds all of its analyzer tokens (``GPT-2`` → ``gpt`` and ``2``),
checked with one indexed FTS5 lookup per term. Hangul words are never key terms: Korean
morphology makes "absent" too easy to get wrong.

Measured on the two development QA sets (eight unanswerable questions among 67): four
unanswerable questions caught (``KV``, ``Chinchilla``, ``FlashAttention``, ``Q3_K_S``), no
answerable question flagged. Questions about a named thing the documents do mention ("the
LoRA learning rate", "BERT's tokenizer") are not caught: that needs a reader, not a lookup.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from sqlalchemy.orm import Session

from saem.text.analyzer import analyze, has_hangul

__all__ = ["key_terms", "missing_terms"]

# Latin words with inner digits, dots, hyphens or underscores ("GPT-2", "Q3_K_S", "v1.5")
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*")
_MAX_TERMS = 8
_SQL = "SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT 1"


def _is_key(word: str, korean: bool, option: bool = False) -> bool:
    letters = [c for c in word if c.isalpha()]
    if len(word) < 2 or not letters:
        return False
    if any(c.isdigit() for c in word) or option:
        return True
    parts = re.split(r"[._]", word)
    if len(parts) > 1 and all(len(p) >= 2 for p in parts):  # typing.override, lru_cache (not "e.g")
        return True
    upper = sum(c.isupper() for c in letters)
    if upper == len(letters):  # acronym
        return True
    if upper >= 2 or (upper == 1 and not letters[0].isupper()):  # FlashAttention, LoRA, iPhone
        return True
    return korean and letters[0].isupper() and len(word) >= 3


def key_terms(question: str) -> list[str]:
    """The name-like Latin words of ``question``, unique, in order (at most eight)."""
    korean = has_hangul(question)
    out: dict[str, None] = {}
    for m in _LATIN.finditer(question):
        if _is_key(m.group(), korean, option=question[max(0, m.start() - 2) : m.start()] == "--"):
            out.setdefault(m.group(), None)
    return list(out)[:_MAX_TERMS]


def _connection(session_or_conn: Any) -> Any:
    if isinstance(session_or_conn, sqlite3.Connection):
        return session_or_conn
    return session_or_conn.connection() if isinstance(session_or_conn, Session) else session_or_conn


def missing_terms(session_or_conn: Any, question: str) -> list[str]:
    """Key terms of ``question`` that no chunk contains (the term's tokens as a phrase).

    ``session_or_conn``: a SQLAlchemy ``Session``/``Connection`` or ``sqlite3.Connection`` on the
    catalogue. Tokens are quoted FTS5 strings passed as a bound parameter.
    """
    conn = _connection(session_or_conn)
    missing: list[str] = []
    for term in key_terms(question):
        tokens = list(dict.fromkeys(analyze(term)))
        if not tokens:
            continue
        expr = '"' + " ".join(t.replace('"', '""') for t in tokens) + '"'  # a phrase: adjacent tokens
        if isinstance(conn, sqlite3.Connection):
            row = conn.execute(_SQL, (expr,)).fetchone()
        else:
            row = conn.exec_driver_sql(_SQL, (expr,)).first()
        if row is None:
            missing.append(term)
    return missing
