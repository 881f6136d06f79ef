"""The one database handle: one schema whoever opens the file first, clear errors, one class."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from saem.errors import StorageBusy
from saem.store.catalogue import Catalogue, Chunk, get_meta, has_catalogue
from saem.store.chat import ChatSession, MemoryDB, TraceRow
from saem.store.db import Base, Database

pytestmark = pytest.mark.unit

TABLES = {"sources", "chunks", "runs", "meta", "chat_sessions", "chat_messages", "memories", "kv_store", "chat_traces"}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table')")}


def test_every_table_is_on_one_metadata() -> None:
    assert TABLES <= set(Base.metadata.tables)
    assert Chunk.metadata is ChatSession.metadata is TraceRow.metadata is Base.metadata


def test_the_catalogue_and_memory_handles_are_one_class() -> None:
    assert Catalogue is Database and MemoryDB is Database


@pytest.mark.parametrize("first", ["catalogue", "memory"])
def test_whoever_opens_the_file_first_creates_the_whole_schema(tmp_path: Path, first: str) -> None:
    path = tmp_path / "saem.db"
    db = Catalogue.open(path) if first == "catalogue" else MemoryDB.open(str(path))
    db.close()
    assert TABLES | {"chunks_fts"} <= _tables(path)
    again = Database.open(f"sqlite:///{path}")  # a URL to the same file is the same database
    assert again.path == path.resolve()
    with again.read() as s:
        assert has_catalogue(s) and get_meta(s, "generation") == "0"
    again.close()


def test_an_in_memory_url_shares_one_connection_between_sessions() -> None:
    db = Database.open("sqlite://")
    assert db.path is None
    with db.write() as s:
        s.add(ChatSession(id="s1", user_id="u", state="{}", created_at=0.0, updated_at=0.0))
    with db.read() as s:
        assert s.scalars(select(ChatSession.id)).all() == ["s1"]
    assert db.checkpoint() is True  # nothing to checkpoint: not a file
    with pytest.raises(ValueError, match="not a file"):
        _ = db.db_path


def test_readonly_reads_refuse_writes_and_are_only_for_files(tmp_path: Path) -> None:
    path = tmp_path / "saem.db"
    Database.open(path).close()
    ro = Database.open(path, readonly=True)
    with ro.read() as s:
        assert get_meta(s, "schema") is not None
    with pytest.raises(StorageBusy, match="read-only"):
        with ro.write():
            pass
    ro.close()
    with pytest.raises(ValueError, match="readonly is for SQLite files"):
        Database("sqlite://", readonly=True)


def test_a_writer_held_past_the_timeout_is_storage_busy_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "saem.db"
    holder = Database.open(path)
    waiter = Database.open(path, busy_timeout_s=0.05)
    with holder.write() as held:
        held.connection()  # BEGIN IMMEDIATE: the write lock is taken
        with pytest.raises(StorageBusy, match=str(path.resolve())) as info:
            with waiter.write() as s:
                s.add(ChatSession(id="s2", user_id="u", state="{}", created_at=0.0, updated_at=0.0))
    assert info.value.hint
    holder.close()
    waiter.close()
