"""Lexical search over the ``chunks_fts`` FTS5 table with BM25.

    with catalogue.read() as session:
        hits = search(session, "토크나이저는 무엇인가요?", k=10)   # [(chunk_id, score), ...]

The query goes through the same analyzer as the chunks (``saem.text.analyzer``); every
token is then quoted as an FTS5 string literal (``"tok"`` with ``"`` doubled), and the tokens
are joined with ``OR``. So nothing a user types — ``"``, ``*``, ``NEAR``, ``AND``, ``OR 1=1``,
``col:`` — is ever FTS5 syntax, and the query is passed as a bound parameter, never spliced into
SQL. Scores are ``-bm25()``: higher is better. Read-only; safe to call from any thread with
its own session or connection.

Bounded work. FTS5 computes BM25 for every row an ``OR`` query matches before it sorts, so a
word found in most chunks makes the query scan the table: in a 107k-chunk store ``the`` is in
88k chunks and costs 60–90 ms on its own. So each term's document frequency (df) is counted
first (a cheap pass, ≈ 25 ns a posting; keep a :class:`TermStats` per store version to count
each term once), and when the dfs add up to more than ``max_postings`` the query is split
(:func:`plan_terms`) the way a "common terms" query splits it:

* **match** terms — the rarest, while their dfs add up to at most ``max_postings`` (the rarest
  one always): a chunk must hold one of them to be found;
* **score** terms — the other terms found in at most half the chunks: they only add to the
  BM25 of chunks the match terms found, through a second query ``(match) AND (score)``.

A chunk's score is then its exact BM25 for the whole query, except for terms found in more
than half the chunks, which FTS5 weighs at ``idf = 1e-6`` anyway (``log((N - df + 0.5) / (df
+ 0.5))`` floored): they are dropped, and a query made only of such words finds nothing
lexically. What is lost is the chunks that hold only common terms. While at most
``max_postings`` chunks can match (the summed dfs, or the store's size, are that small) the
query stays one plain ``OR`` of every token. Only the first ``MAX_TERMS`` distinct tokens count.
"""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from saem.text.analyzer import analyze

__all__ = [
    "MAX_POSTINGS",
    "MAX_TERMS",
    "SCORE_POSTINGS_FACTOR",
    "WITHIN_SHARE",
    "Plan",
    "TermStats",
    "fts_match_expression",
    "plan_terms",
    "query_terms",
    "search",
]

MAX_POSTINGS = 5_000
"""Default cap on the summed df of the match terms (BM25 costs ≈ 1 µs a matched row)."""
SCORE_POSTINGS_FACTOR = 40
"""Score terms may add up to this many times ``max_postings``: FTS5 only counts their rows."""
MAX_TERMS = 64
"""Distinct query tokens searched at most (in query order)."""
WITHIN_SHARE = 4
"""A ``within`` of at least 1/WITHIN_SHARE of the store is applied to the top WITHIN_SHARE·k hits first."""

_SQL = (
    "SELECT rowid, -bm25(chunks_fts) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
    "ORDER BY score DESC, rowid ASC LIMIT ?"
)
# The same, over the chunk ids of a JSON array (one bound parameter, however many). The "+"
# keeps the IN list out of FTS5's plan: as a rowid constraint it made SQLite run the MATCH once
# per listed id (0.2 s for 1,000 ids, 14 s for 50,000, against 1 ms as a filter on the matches).
_SQL_WITHIN = (
    "SELECT rowid, -bm25(chunks_fts) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
    "AND +rowid IN (SELECT value FROM json_each(?)) ORDER BY score DESC, rowid ASC LIMIT ?"
)
_DF_SQL = "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)"
_ROWS_SQL = "SELECT count(*) FROM chunks_fts_docsize"  # FTS5's own one-row-per-chunk table


@dataclass
class TermStats:
    """Counts that plan queries over one version of a store: its row count and each term's
    df, capped at ``rows // 2 + 1`` (more only says "over half").

    Keep one per store version and drop it when the store changes; counts from an older
    version only make plans a little off, never results wrong. Concurrent searches may count
    a term twice, harmlessly.
    """

    rows: int | None = None
    df: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """The terms of one lexical search: ``match`` (ORed: a chunk must hold one) and ``score``
    (added to the BM25 of the chunks ``match`` finds). Both in query order."""

    match: list[str]
    score: list[str]


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def query_terms(query: str) -> list[str]:
    """The distinct analyzed tokens of ``query`` in first-seen order, at most ``MAX_TERMS``."""
    seen: dict[str, None] = {}
    for token in analyze(query):
        seen.setdefault(token, None)
        if len(seen) == MAX_TERMS:
            break
    return list(seen)


def fts_match_expression(query: str | Sequence[str]) -> str | None:
    """The FTS5 MATCH expression: quoted unique tokens joined by OR (None if empty).

    ``query`` is the user's text, or terms already analyzed (as from :func:`query_terms`).
    """
    terms = query_terms(query) if isinstance(query, str) else list(dict.fromkeys(query))
    if not terms:
        return None
    return " OR ".join(_quote(t) for t in terms)


def plan_terms(terms: Sequence[str], df: Mapping[str, int], rows: int, max_postings: int) -> Plan:
    """Split ``terms`` (given each one's ``df`` in a store of ``rows`` chunks) into a :class:`Plan`.

    Terms in no chunk go. When at most ``max_postings`` chunks can match (``rows`` or the
    summed dfs), all the others match. Otherwise terms in more than half the chunks go too;
    match terms are taken rarest first (ties: query order) while their dfs add up to at most
    ``max_postings``, the rarest always; score terms are the rest, rarest first, within
    ``SCORE_POSTINGS_FACTOR * max_postings``. A query whose every term is in more than half
    the chunks gets an empty plan.
    """
    present = [t for t in terms if df.get(t, 0) > 0]
    if min(rows, sum(df[t] for t in present)) <= max_postings:
        return Plan(present, [])
    useful = sorted((t for t in present if df[t] <= rows // 2), key=lambda t: df[t])  # stable
    n_match = max(1, bisect_right(list(accumulate(df[t] for t in useful)), max_postings))
    n_score = bisect_right(list(accumulate(df[t] for t in useful[n_match:])), SCORE_POSTINGS_FACTOR * max_postings)
    match, score = set(useful[:n_match]), set(useful[n_match : n_match + n_score])
    return Plan([t for t in terms if t in match], [t for t in terms if t in score])


def _runner(session_or_conn: Any) -> Callable[[str, tuple[Any, ...]], list[Any]]:
    if isinstance(session_or_conn, sqlite3.Connection):
        return lambda sql, params: session_or_conn.execute(sql, params).fetchall()
    conn = session_or_conn.connection() if isinstance(session_or_conn, Session) else session_or_conn
    return lambda sql, params: list(conn.exec_driver_sql(sql, params).all())


def _count(run: Callable[[str, tuple[Any, ...]], list[Any]], terms: Sequence[str], stats: TermStats) -> None:
    if stats.rows is None:
        stats.rows = int(run(_ROWS_SQL, ())[0][0])
    cap = stats.rows // 2 + 1
    for term in terms:
        if term not in stats.df:
            stats.df[term] = int(run(_DF_SQL, (_quote(term), cap))[0][0])


def search(
    session_or_conn: Any,
    query: str,
    k: int,
    *,
    max_postings: int | None = MAX_POSTINGS,
    stats: TermStats | None = None,
    within: Sequence[int] | np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The ``k`` best chunks for ``query`` as ``(chunk_id, score)``, best first.

    ``session_or_conn`` is a SQLAlchemy ``Session`` or ``Connection`` or a ``sqlite3.Connection``
    on the catalogue. ``max_postings`` bounds the work (see the module docstring; None: one
    plain ``OR`` of every token, whatever it costs). ``stats`` keeps the counts between calls
    on the same store version. ``within``: search only these chunk ids (BM25 still weighs terms
    over the whole store); while they are at most ``max_postings``, the query is one plain ``OR``
    of every token (their BM25 costs at most that many rows). Returns ``[]`` for a query with
    no searchable tokens, none worth searching, ``k <= 0`` or an empty ``within``.
    """
    terms = query_terms(query)
    if not terms or k <= 0 or (within is not None and len(within) == 0):
        return []
    run = _runner(session_or_conn)
    stats = stats if stats is not None else TermStats()
    ids: str | None = None  # ``within`` as the JSON array the SQL reads, made when first needed
    wanted: set[int] | None = None  # ``within`` as a set, when it is a large part of the store
    if within is not None:
        if stats.rows is None:
            stats.rows = int(run(_ROWS_SQL, ())[0][0])
        if len(within) * WITHIN_SHARE >= stats.rows:
            wanted = set(np.asarray(within, dtype=np.int64).tolist())

    def bm25(expr: str) -> list[tuple[int, float]]:
        nonlocal ids
        if wanted is not None:
            # most chunks are allowed: the allowed ones among the top few k are the exact top k
            # when there are k of them, or when those are all the matches (no IN list to build)
            top = run(_SQL, (expr, WITHIN_SHARE * int(k)))
            kept = [(int(r[0]), float(r[1])) for r in top if int(r[0]) in wanted]
            if len(kept) >= k or len(top) < WITHIN_SHARE * k:
                return kept[:k]
        if within is None:
            return [(int(r[0]), float(r[1])) for r in run(_SQL, (expr, int(k)))]
        if ids is None:
            ids = json.dumps(np.asarray(within, dtype=np.int64).tolist())
        return [(int(r[0]), float(r[1])) for r in run(_SQL_WITHIN, (expr, ids, int(k)))]

    if max_postings is None or len(terms) == 1 or (within is not None and len(within) <= max_postings):
        return bm25(" OR ".join(map(_quote, terms)))
    _count(run, terms, stats)
    assert stats.rows is not None
    plan = plan_terms(terms, stats.df, stats.rows, max_postings)
    if not plan.match:
        return []
    match = " OR ".join(map(_quote, plan.match))
    hits = bm25(match)
    if plan.score:
        # Chunks holding a score term get their whole-query BM25 from this second query; the
        # top k of the two lists together is then exact (a chunk missing from it is beaten
        # by k chunks of the second list, or holds no score term and is scored in the first).
        scores = dict(hits)
        scores.update(bm25(f"({match}) AND ({' OR '.join(map(_quote, plan.score))})"))
        hits = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return hits
