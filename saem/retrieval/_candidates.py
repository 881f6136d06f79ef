"""Candidate gathering for hybrid search: the filter as SQL, the two searches within it, and rows.

    where = compile_chunk_filter({"source": {"$glob": "*.md"}})   # ValueError before any I/O
    allowed = allowed_ids(session, where)                          # sorted chunk ids
    dense = dense_search(index, qvec, 50, allowed)                 # FAISS over those ids only
    load_rows(session, cands)                                      # text, span, source, vector

Filters follow :mod:`saem.store.filters` over the chunk fields of ``Hit.metadata``:
``chunk_id``, ``source``, ``start``, ``end``, ``heading`` (the ``" › "``-joined heading path)
and ``page``; other keys (the per-stage scores and ranks are results, not metadata) raise
``ValueError``. They run in SQL before either search, so ``k`` hits come back whenever ``k``
chunks match. Thread-safe given a session per thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, String, func, select, type_coerce
from sqlalchemy import text as sql_text

from saem.retrieval._fusion import mmr_select
from saem.retrieval.types import Hit
from saem.store.catalogue import Chunk, Source, json_list
from saem.store.filters import ColumnFields, Scalar, compile_filter
from saem.store.index import VectorIndex

__all__ = ["Cand", "ChunkFilter", "allowed_ids", "compile_chunk_filter", "dense_search", "load_rows", "mmr", "to_hit",
           "with_neighbours"]  # fmt: skip

_HEADINGS = func.json_each(Chunk.heading_path).table_valued("value")
_SOURCE_KEYS = frozenset({"source"})


class _ChunkFields(ColumnFields):
    """The chunk fields of ``Hit.metadata``; a heading is compared by its stored JSON path when
    it can be (one string comparison a row instead of a ``json_each`` per row: 1 s at 100k)."""

    def equals(self, key: str, value: Scalar) -> ColumnElement[bool]:
        if key == "heading" and isinstance(value, str):
            return Chunk.heading_path == json_list(value.split(" › ") if value else [])
        return super().equals(key, value)


CHUNK_FIELDS = _ChunkFields(
    {
        "chunk_id": Chunk.id,
        "source": Source.path,
        "start": Chunk.start,
        "end": Chunk.end,
        # as Hit.heading: the path joined by " › ", "" for none (json_each keeps the list's order)
        "heading": type_coerce(
            func.coalesce(select(func.group_concat(_HEADINGS.c.value, " › ")).scalar_subquery(), ""), String
        ),
        "page": Chunk.page,
    }
)


@dataclass(frozen=True)
class ChunkFilter:
    """A checked filter, split into its conditions on ``sources`` and on ``chunks`` (None: none)."""

    sources: ColumnElement[bool] | None
    chunks: ColumnElement[bool] | None


def compile_chunk_filter(filters: Mapping[str, Any]) -> ChunkFilter:
    """``filters`` as SQL over the chunk fields; raises ``ValueError`` (as the vector store does)."""
    compile_filter(filters, CHUNK_FIELDS)  # the whole filter checked first, so errors come in key order
    by_source = {k: v for k, v in filters.items() if k in _SOURCE_KEYS}
    by_chunk = {k: v for k, v in filters.items() if k not in _SOURCE_KEYS}
    return ChunkFilter(
        compile_filter(by_source, CHUNK_FIELDS) if by_source else None,
        compile_filter(by_chunk, CHUNK_FIELDS) if by_chunk else None,
    )


def allowed_ids(s: Any, where: ChunkFilter) -> np.ndarray:
    """The ids of the chunks that pass ``where``, ascending, as int64.

    The sources are selected first and their chunks found through the ``(source_id, ord)``
    index, so a filter on ``source`` reads only the chosen sources' chunks (a join let SQLite
    scan every chunk: 26 ms at 100k; sorting in SQL made it read their rows: 230 ms).
    """
    q = select(Chunk.id)
    if where.sources is not None:
        q = q.where(Chunk.source_id.in_(select(Source.id).where(where.sources)))
    if where.chunks is not None:
        q = q.where(where.chunks)
    compiled = q.compile(dialect=s.get_bind().dialect)
    names = compiled.positiontup
    params = compiled.params if names is None else tuple(compiled.params[n] for n in names)
    # on the session's own DBAPI connection (its transaction and snapshot), not through
    # SQLAlchemy's result rows: 100 ms -> 45 ms for 50k ids
    cursor = s.connection().connection.driver_connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return np.sort(np.fromiter((r[0] for r in cursor), dtype=np.int64))
    finally:
        cursor.close()


def dense_search(index: VectorIndex, qvec: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
    """``index.search(qvec, k)``, or with ``allowed`` the ``k`` nearest among those ids only."""
    return index.search(qvec, k, ids=allowed)


@dataclass
class Cand:
    chunk_id: int
    fused_score: float = 0.0
    fused_rank: int = 0
    dense: tuple[int, float] | None = None
    lexical: tuple[int, float] | None = None
    rerank: tuple[int, float] | None = None
    row: Any = None
    vector: np.ndarray | None = None
    cosine: float = 0.0


def with_neighbours(s: Any, dense: list[tuple[int, float]], qvec: np.ndarray, weight: float) -> list[tuple[int, float]]:
    """The dense hits re-scored as ``cos(q, c) + weight · mean cos(q, n)`` over the chunks ``n``
    just before and after ``c`` in its source, best first (stage 2 of :mod:`saem.retrieval.hybrid`)."""
    ids = [cid for cid, _ in dense]
    place = {int(r.id): (int(r.source_id), int(r.ord)) for r in s.execute(
        select(Chunk.id, Chunk.source_id, Chunk.ord).where(Chunk.id.in_(ids)))}  # fmt: skip
    keys = {(src, o + d) for src, o in place.values() for d in (-1, 1)}
    near: dict[tuple[int, int], float] = {}
    for batch in _batched(sorted(keys), 400):  # SQLite binds at most 32,766 parameters
        # a join on a VALUES list probes the (source_id, ord) index once per key; a row-value IN
        # list scanned the whole table (25 ms at 10k chunks against 0.7 ms). Values are bound.
        rows = ", ".join(f"(:s{i}, :o{i})" for i in range(len(batch)))
        params = {f"{name}{i}": v for i, key in enumerate(batch) for name, v in zip("so", key, strict=True)}
        for r in s.execute(
            sql_text(
                f"WITH wanted(src, o) AS (VALUES {rows}) SELECT c.source_id, c.ord, c.embedding "
                "FROM wanted JOIN chunks AS c ON c.source_id = wanted.src AND c.ord = wanted.o"
            ),
            params,
        ):
            vec = np.frombuffer(r.embedding, dtype="<f4")
            near[(int(r.source_id), int(r.ord))] = float(vec @ qvec) if vec.shape == qvec.shape else 0.0
    scored = []
    for cid, cos in dense:
        src, o = place.get(cid, (-1, -1))
        around = [near[key] for key in ((src, o - 1), (src, o + 1)) if key in near]
        scored.append((cid, cos + weight * (sum(around) / len(around) if around else cos)))
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
    return [scored[i] for i in order]


def _batched(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def load_rows(s: Any, cands: list[Cand]) -> None:
    """Attach each candidate's chunk row, source path and stored (unit) vector, in one query."""
    if not cands:
        return
    by_id = {c.chunk_id: c for c in cands}
    rows = s.execute(
        select(
            Chunk.id, Chunk.text, Chunk.start, Chunk.end, Chunk.heading_path, Chunk.page, Chunk.embedding, Source.path
        )  # fmt: skip
        .join(Source, Source.id == Chunk.source_id)
        .where(Chunk.id.in_(list(by_id)))
    ).all()
    for row in rows:
        c = by_id[int(row.id)]
        c.row = row
        c.vector = np.frombuffer(row.embedding, dtype="<f4")


def _heading(raw: str) -> str:
    try:
        return " › ".join(json.loads(raw))
    except (ValueError, TypeError):
        return ""


def _final_score(c: Cand) -> float:
    return c.rerank[1] if c.rerank is not None else c.fused_score


def to_hit(c: Cand, rank: int) -> Hit:
    r = c.row
    return Hit(
        chunk_id=c.chunk_id, text=r.text, source=r.path, start=r.start, end=r.end, heading=_heading(r.heading_path),
        page=r.page, rank=rank, score=_final_score(c), fused_score=c.fused_score, fused_rank=c.fused_rank,
        cosine=c.cosine,
        dense_rank=c.dense[0] if c.dense else None, dense_score=c.dense[1] if c.dense else None,
        lexical_rank=c.lexical[0] if c.lexical else None, lexical_score=c.lexical[1] if c.lexical else None,
        rerank_rank=c.rerank[0] if c.rerank else None, rerank_score=c.rerank[1] if c.rerank else None,
    )  # fmt: skip


def mmr(cands: list[Cand], k: int, lam: float, rrf_k: int) -> list[Cand]:
    # relevance from the position in the final order, on the RRF scale: 1 for the first,
    # (c+1)/(c+r) for rank r — independent of the reranker's score units
    c = max(rrf_k, 1)
    relevance = np.asarray([(c + 1) / (c + r) for r in range(1, len(cands) + 1)], dtype=np.float64)
    dims = {x.vector.shape for x in cands if x.vector is not None}
    if len(dims) != 1 or any(x.vector is None for x in cands):
        return cands
    vectors = np.stack([x.vector for x in cands if x.vector is not None]).astype(np.float64)
    picked = mmr_select(relevance, vectors, k, lam)
    chosen = set(picked)
    return [cands[i] for i in picked] + [x for i, x in enumerate(cands) if i not in chosen]


def _faiss() -> Any:
    import faiss

    return faiss
