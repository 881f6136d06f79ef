"""Erasing user text from the memory database: the bytes of ``saem.db`` and ``saem.db-wal`` are read
back, so a row that is only unlinked (free pages, old WAL frames) counts as a leak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlalchemy import Engine, event

from saem.app.traces import TraceStore, TurnTrace
from saem.memory import LongTermMemory, MemoryDB, SQLiteChatMessageHistory, delete_session
from saem.memory.erase import REDACTED, redact_traces
from saem.store import db as store_db
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit

SECRET = "SENTINEL-7f3a"
KEEP = "KEEP-bob-91c2"


def on_disk(db_file: Path) -> bytes:
    """The raw bytes of the database file and its WAL (if any)."""
    wal = db_file.with_name(db_file.name + "-wal")
    return db_file.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_a_deleted_session_leaves_no_bytes_of_its_text_in_the_file_or_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "saem.db"
    db = MemoryDB.open(path)
    traces = TraceStore(db)
    SQLiteChatMessageHistory("s1", db, "alice").append(
        [HumanMessage(f"my passport number is {SECRET}"), AIMessage(f"Noted: {SECRET}")]
    )
    traces.add(TurnTrace(id="t1", session_id="s1", user_id="alice", question=SECRET, prompt=f"<user>{SECRET}"))
    SQLiteChatMessageHistory("s2", db, "bob").append([HumanMessage(KEEP)])
    traces.add(TurnTrace(id="t2", session_id="s2", user_id="bob", question=KEEP, prompt=KEEP))
    assert SECRET.encode() in on_disk(path)

    assert delete_session(db, "bob", "s1") is False  # not bob's: nothing goes
    assert traces.get("t1") is not None
    assert delete_session(db, "alice", "s1") is True
    assert traces.for_session("s1") == [] and SQLiteChatMessageHistory("s1", db, "alice").messages == []
    assert SECRET.encode() not in on_disk(path)  # checkpointed while the database is still open
    db.close()

    raw = on_disk(path)
    assert SECRET.encode() not in raw
    assert KEEP.encode() in raw  # bob's session is untouched
    db = MemoryDB.open(path)
    assert [m.text for m in SQLiteChatMessageHistory("s2", db, "bob").messages] == [KEEP]
    assert TraceStore(db).get("t2") is not None


def test_deleted_text_is_zeroed_even_where_the_sqlite_build_keeps_deleted_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # many SQLite builds (Python's own among them) default to secure_delete = ON; simulate one that does not
    real = store_db.make_engine

    def default_off(*args: Any, **kwargs: Any) -> Engine:
        engine = real(*args, **kwargs)
        # runs before saem's own connect hook, as a build default would
        event.listen(engine, "connect", lambda conn, _record: conn.execute("PRAGMA secure_delete = OFF"), insert=True)
        return engine

    monkeypatch.setattr(store_db, "make_engine", default_off)
    path = tmp_path / "saem.db"
    db = MemoryDB.open(path)
    with db.read() as s:
        assert s.connection().exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    SQLiteChatMessageHistory("s1", db, "alice").append([HumanMessage(f"my passport number is {SECRET}")])
    SQLiteChatMessageHistory("s2", db, "alice").append([HumanMessage(KEEP)])  # the page stays in use
    assert delete_session(db, "alice", "s1") is True
    db.close()
    assert SECRET.encode() not in on_disk(path)


def test_forgetting_a_memory_redacts_it_in_the_users_traces_and_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "saem.db"
    db = MemoryDB.open(path)
    traces = TraceStore(db)
    ltm = LongTermMemory(db, HashEmbeddings(64))
    fact = f"my locker code is {SECRET}"
    memory = ltm.add("alice", fact).memory
    assert memory is not None
    ltm.add("bob", fact)  # the same words, another user's memory
    for tid, user in (("t1", "alice"), ("t2", "bob")):
        traces.add(
            TurnTrace(
                id=tid, session_id=f"s-{user}", user_id=user, question="what is my code?",
                prompt=f"<system>Memories:\n- {fact}\n</system>", memories=[fact],
                budget={"dropped": [[f"memory {fact!r}", "over budget"]]},
            )
        )  # fmt: skip

    assert [m.id for m in ltm.forget("alice", id=memory.id)] == [memory.id]
    mine, theirs = traces.get("t1"), traces.get("t2")
    assert mine is not None and theirs is not None
    assert SECRET not in mine.prompt + str(mine.memories) + str(mine.budget)
    assert REDACTED in mine.prompt and mine.memories == [REDACTED]
    assert theirs.memories == [fact]  # another user's trace is not touched
    assert [m.text for m in ltm.memories("bob")] == [fact]

    ltm.forget("bob", query=fact)
    db.close()
    assert SECRET.encode() not in on_disk(path)


def test_redact_traces_ignores_empty_texts_and_counts_changed_traces(tmp_path: Path) -> None:
    db = MemoryDB.open(tmp_path / "saem.db")
    with db.write() as s:
        assert redact_traces(s, "alice", ["anything"]) == 0  # no chat_traces table yet
    traces = TraceStore(db)
    traces.add(TurnTrace(id="t1", session_id="s", user_id="alice", question="q", prompt="a 'quoted' fact"))
    with db.write() as s:
        assert redact_traces(s, "alice", ["", "   "]) == 0
        assert redact_traces(s, "alice", ["A 'QUOTED' FACT"]) == 0  # LIKE matches case-blind; replacing is exact
        assert redact_traces(s, "alice", ["'quoted' fact"]) == 1
    trace = traces.get("t1")
    assert trace is not None and trace.prompt == f"a {REDACTED}"
