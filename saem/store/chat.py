"""Memory tables and the database handle they live in.

Tables (SQLAlchemy 2.0 typed ORM, on their own ``MetaData`` so they can share ``saem.db`` with the
ingest catalogue without either creating the other's tables):

* ``chat_sessions`` — one row per conversation: ``id`` (the session id), ``user_id``, ``title``,
  ``state`` (a JSON object), ``created_at`` / ``updated_at`` (Unix seconds);
* ``chat_messages`` — ``seq`` (AUTOINCREMENT: the order of messages, never reused), the session,
  the message ``type`` and ``data`` (``langchain_core.messages.message_to_dict`` as JSON; no pickle);
* ``memories`` — long-term facts per user: text, embedding (float32 little-endian, L2-normalised),
  the embedder id, timestamps, and the session/turn the fact came from;
* ``kv_store`` — ``(namespace, key) → bytes`` for ``SQLiteStore``;
* ``chat_traces`` — one row per chat turn (``saem.app.traces.TraceStore``), on its own
  ``TraceBase`` metadata: ``MemoryDB.open`` does not create it, ``TraceStore`` does. It is
  defined here so that erasing a session or a memory (``saem.memory.erase``) reaches it.

    db = MemoryDB.open("./.saem/saem.db")     # or any SQLAlchemy URL
    with db.write() as s:                     # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)
        s.add(ChatSession(id="s1", user_id="u", state="{}", created_at=0.0, updated_at=0.0))
    with db.read() as s:
        s.get(ChatSession, "s1")

SQLite files use the catalogue's engine factory (WAL, ``busy_timeout``, foreign keys, ``BEGIN
IMMEDIATE`` for writers), so two threads or two processes writing queue on the lock instead of
failing. Every SQLite connection also sets ``secure_delete = ON``: deleted rows (a deleted
session, a forgotten memory) are overwritten with zeros instead of lingering in free pages; the
WAL still holds them until :meth:`MemoryDB.checkpoint`. Other URLs (PostgreSQL) get a plain
engine and ordinary transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from saem.errors import IndexCorrupt, StorageBusy

# The catalogue's engine factory (private for now; the lead is asked to make it public).
from saem.store.catalogue import make_engine, write_session

__all__ = ["MemoryBase", "ChatSession", "ChatMessage", "MemoryRow", "KeyValue", "TraceBase", "TraceRow", "MemoryDB"]


class MemoryBase(DeclarativeBase):
    pass


class ChatSession(MemoryBase):
    __tablename__ = "chat_sessions"
    __table_args__ = (Index("ix_chat_sessions_user", "user_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[str] = mapped_column(String)
    title: Mapped[str | None]
    state: Mapped[str] = mapped_column(Text, default="{}")  # a JSON object
    created_at: Mapped[float]
    updated_at: Mapped[float]


class ChatMessage(MemoryBase):
    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_session", "session_id", "seq"), {"sqlite_autoincrement": True})

    seq: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String)
    data: Mapped[str] = mapped_column(Text)  # message_to_dict(...) as JSON
    created_at: Mapped[float]


class MemoryRow(MemoryBase):
    __tablename__ = "memories"
    __table_args__ = (Index("ix_memories_user", "user_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, L2-normalised
    embed_model: Mapped[str] = mapped_column(String)
    created_at: Mapped[float]
    updated_at: Mapped[float]
    source_session: Mapped[str | None]
    source_turn: Mapped[int | None]


class KeyValue(MemoryBase):
    __tablename__ = "kv_store"

    namespace: Mapped[str] = mapped_column(String, primary_key=True)
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class TraceBase(DeclarativeBase):
    pass


class TraceRow(TraceBase):
    """A turn trace; see ``saem.app.traces`` for the columns' meaning."""

    __tablename__ = "chat_traces"
    __table_args__ = (Index("ix_chat_traces_session", "session_id", "created_at"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    session_id: Mapped[str] = mapped_column(String)
    user_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[float]
    question: Mapped[str] = mapped_column(Text)
    standalone_question: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String)
    abstained: Mapped[bool] = mapped_column(Boolean)
    prompt: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int]
    data: Mapped[str] = mapped_column(Text)  # JSON: budget, timings, retrieved, calls, tool_calls, answer, ...


class MemoryDB:
    """A handle on the database memory lives in. Share it between threads (the engine pools
    connections), never a ``Session``. ``open`` creates the tables; it is idempotent.

    Write errors caused by a lock held past ``busy_timeout_s`` raise ``StorageBusy``.
    """

    def __init__(self, url: str | URL | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.url, self.engine = _engine_for(url, busy_timeout_s)
        self._write_engine = self.engine.execution_options(saem_write=True)

    @classmethod
    def open(cls, url: str | URL | Path | MemoryDB, *, busy_timeout_s: float = 30.0) -> MemoryDB:
        """A ready database: ``url`` is a ``MemoryDB`` (returned as is), a file path or a URL."""
        if isinstance(url, MemoryDB):
            return url
        db = cls(url, busy_timeout_s=busy_timeout_s)
        db.create_schema()
        return db

    def create_schema(self) -> None:
        with self.write() as s:
            MemoryBase.metadata.create_all(s.connection())

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read session (one snapshot until it ends; never blocked by a writer under WAL)."""
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One short write transaction (``BEGIN IMMEDIATE`` on SQLite): commit, or roll back on error."""
        with write_session(self._write_engine, lambda err: _wrap(err, self.url)) as s:
            yield s

    def checkpoint(self, *, timeout_s: float = 1.0) -> bool:
        """Copy the WAL into the database file and truncate the WAL to zero bytes, so rows just
        deleted leave no copy in ``saem.db-wal``. Waits at most ``timeout_s`` for readers and
        writers; returns whether it completed (False when busy, never raises). A no-op (True)
        for databases that are not SQLite files."""
        if self.engine.dialect.name != "sqlite" or not _is_file(self.url):
            return True
        try:
            raw = self.engine.raw_connection()
        except Exception:
            return False
        try:
            cur = raw.cursor()
            (previous,) = cur.execute("PRAGMA busy_timeout").fetchone()
            cur.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            try:
                row = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                cur.execute(f"PRAGMA busy_timeout = {int(previous)}")
            return row is not None and int(row[0]) == 0
        except Exception:  # busy or locked: the next checkpoint will do it
            return False
        finally:
            raw.close()

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"MemoryDB({self.url.render_as_string(hide_password=True)!r})"


def _is_file(url: URL) -> bool:
    database = url.database or ""
    return bool(database) and database != ":memory:" and not database.startswith("file:")


def _secure_delete(dbapi_conn: Any, _record: Any) -> None:
    # overwrite deleted content with zeros: deleted sessions and forgotten memories hold user text
    dbapi_conn.execute("PRAGMA secure_delete = ON")


def _file_engine(path: Path, busy_timeout_s: float) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(path, readonly=False, busy_timeout_s=busy_timeout_s)
    event.listen(engine, "connect", _secure_delete)
    return engine


def _engine_for(url: str | URL | Path, busy_timeout_s: float) -> tuple[URL, Engine]:
    if isinstance(url, Path) or (isinstance(url, str) and "://" not in url):
        path = Path(url).expanduser().resolve()
        return make_url(f"sqlite+pysqlite:///{path}"), _file_engine(path, busy_timeout_s)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return parsed, create_engine(parsed, pool_pre_ping=True)
    if _is_file(parsed):
        return parsed, _file_engine(Path(parsed.database or "").expanduser().resolve(), busy_timeout_s)
    # In-memory (tests, throwaway sessions): one shared connection, so every session sees the same data.
    engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        _secure_delete(dbapi_conn, _record)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return parsed, engine


def _wrap(err: OperationalError, url: URL) -> Exception:
    msg = str(err.orig) if err.orig is not None else str(err)
    where = url.render_as_string(hide_password=True)
    if "locked" in msg or "busy" in msg:
        return StorageBusy(f"the memory database {where} is locked by another writer", hint="retry in a moment")
    if "not a database" in msg or "malformed" in msg:
        return IndexCorrupt(f"{where} is not a readable database: {msg}", hint="move it away")
    return err
