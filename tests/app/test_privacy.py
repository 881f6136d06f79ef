"""Privacy through the ``Saem`` facade: deleting a session and forgetting a memory leave none of
their text in ``saem.db`` or ``saem.db-wal``; reading and deleting stored things needs no model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from saem.app.saem import Saem
from saem.app.traces import TraceStore, TurnTrace
from saem.errors import ModelError
from saem.memory import LongTermMemory, MemoryDB, SQLiteChatMessageHistory
from saem.testing import HashEmbeddings, ScriptedChatModel

pytestmark = pytest.mark.unit

SECRET = "SENTINEL-7f3a"
KEEP = "KEEP-bob-91c2"
DOCS = {"sampling.md": "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose mass exceeds p.\n"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("saem-privacy")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    Saem(data_dir=root / "data", embedder=HashEmbeddings(64)).ingest(root / "docs")
    return root / "data"


def make_app(data_dir: Path, tmp_path: Path, script: list[Any], **settings: Any) -> Saem:
    shutil.copytree(data_dir, tmp_path / "data")
    app = Saem(data_dir=tmp_path / "data", embedder=HashEmbeddings(64), answer_mode="generate", **settings)
    app._chat_model = ScriptedChatModel(script=script)  # the facade has no chat-model argument
    return app


def on_disk(app: Saem) -> bytes:
    db_file = app.settings.db_path
    wal = db_file.with_name(db_file.name + "-wal")
    return db_file.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def close(app: Saem) -> None:
    """Dispose of every connection the app opened on ``saem.db`` (the facade has no ``close``)."""
    app._memory().db.close()
    catalogue = getattr(app._searcher, "_cat", None)
    if catalogue is not None:
        catalogue.close()


def test_delete_session_removes_its_messages_and_traces_from_disk(data_dir: Path, tmp_path: Path) -> None:
    app = make_app(data_dir, tmp_path, ["Top-p keeps the smallest set [1].", "It keeps the top tokens [1]."])
    first = app.ask(f"My badge number is {SECRET}.", session_id="s1", user_id="alice")  # no document: abstains
    mine = app.ask("What does top-p sampling keep?", session_id="s1", user_id="alice")
    theirs = app.ask(f"What does top-p sampling keep? {KEEP}", session_id="s2", user_id="bob")
    trace = app.trace(mine.trace_id)
    assert trace is not None and SECRET in trace.prompt  # the rendered prompt holds the earlier turn
    assert SECRET.encode() in on_disk(app)

    assert app.delete_session("s1", user_id="bob") is False  # another user's session: untouched
    assert app.trace(mine.trace_id) is not None
    assert app.delete_session("s1", user_id="alice") is True
    assert app.trace(first.trace_id) is None and app.trace(mine.trace_id) is None and app.history("s1") == []
    assert [s.id for s in app.sessions()] == ["s2"]
    assert SECRET.encode() not in on_disk(app)
    close(app)

    raw = on_disk(app)
    assert SECRET.encode() not in raw
    assert KEEP.encode() in raw
    again = Saem(data_dir=app.settings.data_dir, chat_model="/nonexistent/model.gguf")
    assert again.trace(theirs.trace_id) is not None and len(again.history("s2")) == 2


def test_forget_leaves_no_copy_of_the_memory_in_traces_or_on_disk(data_dir: Path, tmp_path: Path) -> None:
    app = make_app(data_dir, tmp_path, ["Top-p keeps the smallest set [1]."], memory_min_score=-1.0)
    fact = f"my locker code is {SECRET}"
    added = app._memory().ltm.add("alice", fact).memory
    assert added is not None
    answer = app.ask("What does top-p sampling keep?", session_id="s1", user_id="alice")
    trace = app.trace(answer.trace_id)
    assert trace is not None and fact in trace.prompt and trace.memories == [fact]  # recalled into the prompt
    assert SECRET.encode() in on_disk(app)

    [gone] = app.forget("alice", id=added.id)
    assert gone.text == fact and app.memories("alice") == []
    trace = app.trace(answer.trace_id)
    assert trace is not None and SECRET not in trace.prompt and SECRET not in str(trace.memories)
    close(app)
    assert SECRET.encode() not in on_disk(app)


def test_stored_things_are_read_and_deleted_without_building_a_model(data_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(data_dir, tmp_path / "data")
    app = Saem(data_dir=tmp_path / "data", chat_model="/nonexistent/model.gguf", embed_model="/nonexistent/embedder")
    with pytest.raises(ModelError):
        app.chat_model  # noqa: B018 - the setting really points nowhere
    db = MemoryDB.open(app.settings.db_path)
    SQLiteChatMessageHistory("s1", db, "alice").append([HumanMessage("hello"), AIMessage("hi")])
    SQLiteChatMessageHistory("s2", db, "bob").append([HumanMessage("hey")])
    memory = LongTermMemory(db, HashEmbeddings(64)).add("alice", "I live in Seoul").memory
    assert memory is not None
    TraceStore(db).add(TurnTrace(id="t1", session_id="s1", user_id="alice", question="hello"))

    assert [s.id for s in app.sessions("alice")] == ["s1"] and len(app.sessions()) == 2
    assert [m.text for m in app.history("s1")] == ["hello", "hi"]
    assert [m.text for m in app.memories("alice")] == ["I live in Seoul"]
    trace = app.trace("t1")
    assert trace is not None and trace.question == "hello"
    assert app.stats().chunks > 0
    assert [m.id for m in app.forget("alice", id=memory.id)] == [memory.id]
    assert app.delete_session("s1", user_id="alice") is True
    assert [s.id for s in app.sessions()] == ["s2"]
    assert app._chat_model is None and app._turn_parts is None and app._embedder is None
    with pytest.raises(ModelError):  # only forgetting by query needs the embedder
        app.forget("bob", query="hey")
