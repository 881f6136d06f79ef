"""Lexical search over the ``chunks_fts`` FTS5 table with BM25.

    with catalogue.read() as session:
        hits = search(session, "토크나이저는 무엇인가요?", k=10)   # [(chunk_id, score), ...]

The query goes through the same analyzer as the chunks (``saem.retrieval.analyzer``); every
token is then quoted as an FTS5 string literal (``"tok"`` with ``"`` doubled), and the tokens
are joined with ``OR``. So nothing a user types — ``"``, ``*``, ``NEAR``, ``AND``, ``OR 1=1``,
``col:`` — is ever FTS5 syntax, and the query is passed as a bound parameter, never spliced into
SQL. Scores are ``-bm25()``: higher is better. Read-only; safe to call from any thread with
its own session or connection.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy.orm import Session

from saem.retrieval.analyzer import analyze

__all__ = ["search", "fts_match_expression"]

_SQL = (
    "SELECT rowid, -bm25(chunks_fts) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
    "ORDER BY score DESC, rowid ASC LIMIT ?"
)


def fts_match_expression(query: str) -> str | None:
    """The FTS5 MATCH expression for ``query``: quoted unique tokens joined by OR (None if empty)."""
    seen: dict[str, None] = {}
    for token in analyze(query):
        seen.setdefault(token, None)
    if not seen:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in seen)


def search(session_or_conn: Any, query: str, k: int) -> list[tuple[int, float]]:
    """The ``k`` best chunks for ``query`` as ``(chunk_id, score)``, best first.

    ``session_or_conn`` is a SQLAlchemy ``Session`` or ``Connection`` or a ``sqlite3.Connection``
    on the catalogue. Returns ``[]`` for a query with no searchable tokens or ``k <= 0``.
    """
    expr = fts_match_expression(query)
    if expr is None or k <= 0:
        return []
    if isinstance(session_or_conn, sqlite3.Connection):
        rows: Any = session_or_conn.execute(_SQL, (expr, int(k))).fetchall()
    else:
        conn = session_or_conn.connection() if isinstance(session_or_conn, Session) else session_or_conn
        rows = conn.exec_driver_sql(_SQL, (expr, int(k))).all()
    return [(int(r[0]), float(r[1])) for r in rows]
