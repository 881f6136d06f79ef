"""The SQLite catalogue: the source of truth for what a data dir holds.

Tables (SQLAlchemy 2.0 typed ORM):

* ``sources`` — one row per ingested file: path, size, mtime, sha256, embedder and chunker keys;
* ``chunks`` — spans of a source with their embedding (float32 blob, L2-normalised) and the
  embedder id; the integer ``id`` is the FAISS id (AUTOINCREMENT, so ids are never reused);
* ``chunks_fts`` — FTS5 over the analyzed tokens of each chunk (``rowid`` = chunk id), kept in
  the same transaction as ``chunks`` (inserted explicitly, deleted by a trigger);
* ``runs`` — one row per ingest run (``running`` rows left by a killed run become ``interrupted``);
* ``meta`` — key/value: ``generation`` (bumped in every write that changes chunks), ``embed_model``
  and ``dim`` (of the vectors the index holds), ``chunker``, ``schema``.

    cat = Catalogue.open(settings.db_path)
    with cat.read() as s:
        n = s.scalar(select(func.count(Chunk.id)))
    with cat.write() as s:          # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)
        set_meta(s, "embed_model", "fake")

``Catalogue`` is the one database handle, :class:`saem.store.db.Database` (WAL, ``busy_timeout``,
``BEGIN IMMEDIATE`` writers; share the handle between threads, never a ``Session``); the tables
here are declared on its one metadata. ``DataDirLock`` is the exclusive lock an ingest holds on
the data dir (``flock``: released by the kernel when the process dies).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from saem.errors import StorageBusy
from saem.store.db import Base, Database, make_engine, write_session

__all__ = [
    "ChunkSpec",
    "make_engine",
    "write_session",
    "Base",
    "Source",
    "Chunk",
    "Run",
    "Meta",
    "Catalogue",
    "init_catalogue",
    "has_catalogue",
    "DataDirLock",
    "get_meta",
    "set_meta",
    "bump_generation",
    "iter_embeddings",
    "replace_source",
    "copy_source",
    "remove_source",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = "1"
LOCK_FILE = "ingest.lock"


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk as the store writes it: a span of a loaded document's text (``saem.ingest.types``)."""

    text: str
    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    n_tokens: int = 0


class Source(Base):
    """An ingested file. ``path`` is absolute; ``chunker`` is e.g. ``"1:256:32"`` (version:size:overlap)."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True)
    size: Mapped[int]
    mtime_ns: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    mime: Mapped[str] = mapped_column(String, default="text/plain")
    title: Mapped[str | None]
    n_chunks: Mapped[int] = mapped_column(default=0)
    embed_model: Mapped[str]
    chunker: Mapped[str]
    updated_at: Mapped[float]
    run_id: Mapped[int | None]


class Chunk(Base):
    """A span ``[start, end)`` of its source's extracted text, with its embedding."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("source_id", "ord"),
        Index("ix_chunks_model", "embed_model"),
        # Filters on page or heading alone read these small indexes instead of every chunk row
        # (each row holds its text and embedding): at 100k chunks, page 116 -> 0 ms, heading 241 -> 92 ms.
        Index("ix_chunks_page", "page"),
        Index("ix_chunks_heading", "heading_path"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    ord: Mapped[int]
    text: Mapped[str]
    start: Mapped[int]
    end: Mapped[int]
    heading_path: Mapped[str] = mapped_column(default="[]")  # JSON list of headings
    page: Mapped[int | None]
    n_tokens: Mapped[int] = mapped_column(default=0)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, L2-normalised
    embed_model: Mapped[str]
    chunker: Mapped[str]


class Run(Base):
    """One ingest run. ``summary`` is the report counts as JSON."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[float]
    finished_at: Mapped[float | None]
    status: Mapped[str] = mapped_column(default="running")  # running | ok | failed | interrupted
    roots: Mapped[str] = mapped_column(default="[]")
    summary: Mapped[str] = mapped_column(default="{}")
    embed_model: Mapped[str | None]


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str]


_FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(tokens, tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER IF NOT EXISTS chunks_fts_ad AFTER DELETE ON chunks BEGIN "
    "DELETE FROM chunks_fts WHERE rowid = old.id; END",
)


def has_catalogue(s: Session) -> bool:
    """Whether the catalogue's tables exist (the memory module may have made the db first)."""
    wanted = {Meta.__tablename__, Source.__tablename__, Chunk.__tablename__, "chunks_fts"}
    names = s.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars()
    return wanted <= set(names)


def init_catalogue(s: Session) -> None:
    """The catalogue's parts that are not plain tables: the FTS5 index and its delete trigger
    (SQLite), and the ``generation`` counter. Idempotent; :meth:`Database.create_schema` calls it."""
    if s.get_bind().dialect.name == "sqlite":
        for ddl in _FTS_DDL:
            s.connection().exec_driver_sql(ddl)
    if get_meta(s, "generation") is None:
        set_meta(s, "generation", "0")
        set_meta(s, "schema", SCHEMA_VERSION)


# The catalogue is read and written through the one database handle.
Catalogue = Database


def get_meta(session: Session, key: str) -> str | None:
    return session.scalar(select(Meta.value).where(Meta.key == key))


def set_meta(session: Session, key: str, value: str) -> None:
    row = session.get(Meta, key)
    if row is None:
        session.add(Meta(key=key, value=value))
    else:
        row.value = value
    session.flush()


def bump_generation(session: Session) -> int:
    """Increment ``generation`` inside the caller's write transaction; returns the new value."""
    session.execute(text("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'"))
    return int(get_meta(session, "generation") or 0)


def iter_embeddings(session: Session, model: str, *, batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(ids int64[n], vectors float32[n, dim])`` for every chunk embedded by ``model``, by id."""
    last = -1
    while True:
        rows = session.execute(
            select(Chunk.id, Chunk.embedding)
            .where(Chunk.embed_model == model, Chunk.id > last)
            .order_by(Chunk.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
        yield ids, vecs
        last = int(ids[-1])


def json_list(values: tuple[str, ...] | list[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


# --- the per-file writes an ingest makes, each inside the caller's write transaction ---------

_FTS_INSERT = text("INSERT INTO chunks_fts(rowid, tokens) VALUES (:id, :tokens)")
_FTS_COPY = text("INSERT INTO chunks_fts(rowid, tokens) SELECT :new, tokens FROM chunks_fts WHERE rowid = :old")


def replace_source(
    s: Session,
    fields: dict[str, Any],
    chunks: Sequence[ChunkSpec],
    fts_texts: Sequence[str],
    vectors: np.ndarray,
    *,
    source_id: int | None = None,
) -> tuple[list[int], list[int]]:
    """Insert a source (or overwrite row ``source_id``) with exactly these chunks, their
    normalised ``vectors`` and FTS rows; bump the generation. Returns (removed ids, new ids)."""
    removed: list[int] = []
    if source_id is not None:
        removed = list(s.scalars(select(Chunk.id).where(Chunk.source_id == source_id)))
        s.execute(delete(Chunk).where(Chunk.source_id == source_id))
        s.execute(update(Source).where(Source.id == source_id).values(**fields))
        sid = source_id
    else:
        sid = int(s.scalars(insert(Source).values(**fields).returning(Source.id)).one())
    rows = [
        {
            "source_id": sid,
            "ord": i,
            "text": c.text,
            "start": c.start,
            "end": c.end,
            "heading_path": json_list(c.heading_path),
            "page": c.page,
            "n_tokens": c.n_tokens,
            "embedding": np.asarray(vectors[i], dtype="<f4").tobytes(),
            "embed_model": fields["embed_model"],
            "chunker": fields["chunker"],
        }
        for i, c in enumerate(chunks)
    ]
    ids: list[int] = []
    if rows:
        ids = list(s.scalars(insert(Chunk).returning(Chunk.id, sort_by_parameter_order=True), rows))
        s.execute(_FTS_INSERT, [{"id": i, "tokens": t} for i, t in zip(ids, fts_texts, strict=True)])
    bump_generation(s)
    return removed, ids


def copy_source(s: Session, from_id: int, fields: dict[str, Any]) -> tuple[list[int], np.ndarray | None]:
    """Insert a source whose chunks, vectors and FTS rows are copies of source ``from_id``'s;
    bump the generation. Returns (new ids, their vectors)."""
    sid = int(s.scalars(insert(Source).values(**fields).returning(Source.id)).one())
    cols = [c for c in Chunk.__table__.columns if c.name not in ("id", "source_id")]
    old = s.execute(select(Chunk.id, *cols).where(Chunk.source_id == from_id).order_by(Chunk.ord)).all()
    if not old:
        bump_generation(s)
        return [], None
    rows = [{"source_id": sid, **{c.name: r[i + 1] for i, c in enumerate(cols)}} for r in old]
    ids = list(s.scalars(insert(Chunk).returning(Chunk.id, sort_by_parameter_order=True), rows))
    s.execute(_FTS_COPY, [{"new": n, "old": r[0]} for n, r in zip(ids, old, strict=True)])
    bump_generation(s)
    return ids, np.stack([np.frombuffer(r["embedding"], dtype="<f4") for r in rows])


def remove_source(s: Session, source_id: int) -> list[int]:
    """Delete a source, its chunks and their FTS rows; bump the generation. Returns the chunk ids."""
    removed = list(s.scalars(select(Chunk.id).where(Chunk.source_id == source_id)))
    s.execute(delete(Source).where(Source.id == source_id))
    bump_generation(s)
    return removed


class DataDirLock:
    """Exclusive, process-wide lock on a data dir for writers (ingest).

    ``acquire(timeout=0)`` raises ``StorageBusy`` at once when another process holds it;
    ``timeout > 0`` waits up to that many seconds. The kernel releases the lock when the holder
    exits or is killed, so a crashed ingest never leaves a stale lock. POSIX only (``fcntl``).
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise StorageBusy(
                        f"another ingest{holder} is writing to {self.path.parent}",
                        path=self.path.parent,
                        hint="wait for it to finish, or pass --wait SECONDS",
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
