"""The one database handle: an SQLAlchemy engine and its sessions, opened from a path or a URL.

Every table saem keeps (sources, chunks and their lexical index, ingest runs, meta, chat
sessions and messages, memories, the key-value store, turn traces) is declared on one
``Base.metadata``; :meth:`Database.open` creates all of them, so any handle on ``saem.db`` sees
one schema, whichever part of saem opened it first.

    db = Database.open("./.saem/saem.db")       # a file path, or any SQLAlchemy URL
    with db.write() as s:                       # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)
        ...
    with db.read() as s:                        # one snapshot; never blocked by a writer (WAL)
        ...

SQLite files run in WAL mode with ``busy_timeout``, foreign keys and ``secure_delete`` (deleted
rows are overwritten, not left in free pages); writers start with ``BEGIN IMMEDIATE`` so two
writers queue on the lock instead of failing mid-transaction. An in-memory SQLite URL
(``sqlite://``) shares one connection, so every session sees the same data. Other URLs get a
plain engine with ordinary transactions. A lock held past ``busy_timeout_s`` raises
``StorageBusy``; a file that is not a database raises ``IndexCorrupt``; both name the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import StaticPool

from saem.errors import IndexCorrupt, StorageBusy

__all__ = ["Base", "Database", "make_engine", "write_session"]


class Base(DeclarativeBase):
    """The declarative base of every saem table (one ``MetaData``)."""


class Database:
    """A handle on one database. Share it between threads (the engine pools connections), never
    a ``Session``. Cheap to create; :meth:`open` also creates the schema (idempotent).

    ``path`` is the file for SQLite files, else None. ``readonly`` (SQLite files only) opens the
    file with ``mode=ro``: reads work while another process writes, and ``write`` refuses.
    """

    def __init__(self, target: str | URL | Path, *, readonly: bool = False, busy_timeout_s: float = 30.0) -> None:
        self.url, self.path = _locate(target)
        if readonly and self.path is None:
            raise ValueError(f"readonly is for SQLite files, not {self.where}")
        self.readonly = readonly
        if self.path is not None:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = make_engine(self.path, readonly=readonly, busy_timeout_s=busy_timeout_s)
        elif self.url.get_backend_name() == "sqlite":
            self.engine = _memory_engine(self.url)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        self._write_engine = self.engine.execution_options(saem_write=True)

    @classmethod
    def open(
        cls, target: str | URL | Path | Database, *, readonly: bool = False, busy_timeout_s: float = 30.0
    ) -> Database:
        """A ready database: ``target`` is a ``Database`` (returned as is), a file path or a URL.

        Unless ``readonly``, every table is created if missing. Raises ``IndexCorrupt`` when the
        file is not a database, ``StorageBusy`` when another writer holds it past the timeout.
        """
        if isinstance(target, Database):
            return target
        db = cls(target, readonly=readonly, busy_timeout_s=busy_timeout_s)
        if not readonly:
            db.create_schema()
        return db

    @property
    def db_path(self) -> Path:
        """The SQLite file (for handles on a file; ``path`` is None otherwise)."""
        if self.path is None:
            raise ValueError(f"{self.where} is not a file")
        return self.path

    @property
    def where(self) -> str:
        """The file path, or the URL without its password: for messages."""
        return str(self.path) if self.path is not None else self.url.render_as_string(hide_password=True)

    def create_schema(self) -> None:
        """Create every table saem keeps, and the catalogue's lexical index and counters."""
        from saem.store import catalogue, chat  # noqa: F401  (both declare their tables on Base)

        with self.write() as s:
            conn = s.connection()
            Base.metadata.create_all(conn)
            # create_all skips the indexes of tables that exist: a database made by an older
            # saem gets the ones added since (once; an index over 100k chunks takes ≈ 0.6 s)
            for table in Base.metadata.sorted_tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            catalogue.init_catalogue(s)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read session (deferred transaction: a consistent snapshot until it ends)."""
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def write(self, session: Session | None = None) -> Iterator[Session]:
        """One short write transaction (``BEGIN IMMEDIATE`` on SQLite): commit, or roll back on
        error. Keep it short: parse and embed before entering it. Given ``session`` (a caller's
        open write session), its writes join that transaction instead, which commits them all."""
        if session is not None:
            yield session
            return
        if self.readonly:
            raise StorageBusy(f"{self.where} is open read-only", path=self.path)
        with write_session(self._write_engine, self._wrap) as s:
            yield s

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` (``"ok"`` when healthy; ``"ok"`` for other databases)."""
        if self.engine.dialect.name != "sqlite":
            return "ok"
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())

    def checkpoint(self, *, timeout_s: float = 1.0) -> bool:
        """Copy the WAL into the database file and truncate the WAL to zero bytes, so rows just
        deleted leave no copy in ``saem.db-wal``. Waits at most ``timeout_s`` for readers and
        writers; returns whether it completed (False when busy, never raises). A no-op (True)
        for databases that are not SQLite files."""
        if self.path is None or self.readonly:
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
        return f"{type(self).__name__}({self.where!r})"

    def _wrap(self, err: OperationalError) -> Exception:
        msg = str(err.orig) if err.orig is not None else str(err)
        if "locked" in msg or "busy" in msg:
            return StorageBusy(
                f"the database {self.where} is locked by another writer", path=self.path, hint="retry in a moment"
            )
        if "not a database" in msg or "malformed" in msg:
            return IndexCorrupt(
                f"{self.where} is not a readable saem database: {msg}", path=self.path, hint="move it away"
            )
        return err


@contextmanager
def write_session(engine: Engine, wrap: Callable[[OperationalError], Exception]) -> Iterator[Session]:
    """One write transaction on ``engine`` (``BEGIN IMMEDIATE`` on saem's SQLite engines): commit
    on success, roll back on any error; an ``OperationalError`` is raised as ``wrap(err)``."""
    with Session(engine, expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except OperationalError as err:
            s.rollback()
            raise wrap(err) from err
        except BaseException:
            s.rollback()
            raise


def make_engine(db_path: Path, *, readonly: bool, busy_timeout_s: float) -> Engine:
    """The engine for one SQLite file (see the module docstring for what each connection sets)."""
    if readonly:
        url = f"sqlite+pysqlite:///file:{db_path}?mode=ro&uri=true"
    else:
        url = f"sqlite+pysqlite:///{db_path}"
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook emit BEGIN itself (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            cur.execute("PRAGMA secure_delete = ON")  # deleted text is overwritten, not left in free pages
            cur.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a killed process loses nothing committed; power loss may lose the
            # last transactions but never corrupts the file.
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("saem_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _locate(target: str | URL | Path) -> tuple[URL, Path | None]:
    """``(url, file path or None)`` for a path or a URL."""
    if isinstance(target, Path) or (isinstance(target, str) and "://" not in target):
        path = Path(target).expanduser().resolve()
        return make_url(f"sqlite+pysqlite:///{path}"), path
    url = make_url(target)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        return url, Path(database).expanduser().resolve()
    return url, None


def _memory_engine(url: URL) -> Engine:
    """In-memory SQLite (tests, throwaway sessions): one shared connection for every session."""
    engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        dbapi_conn.execute("PRAGMA secure_delete = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine
