"""SQLiteChatMessageHistory: exact round-trips, sessions per user, and concurrent writers."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from sqlalchemy import select

from saem.memory import MemoryDB, SessionForbidden, SQLiteChatMessageHistory, delete_session, list_sessions
from saem.store.chat import ChatMessage

pytestmark = pytest.mark.unit


@pytest.fixture
def db(tmp_path: Path) -> MemoryDB:
    return MemoryDB.open(tmp_path / "saem.db")


def a_turn() -> list[BaseMessage]:
    return [
        SystemMessage("너는 친절한 비서야.", id="sys-1"),
        HumanMessage("서울 날씨 알려 줘", id="h-1", additional_kwargs={"lang": "ko"}),
        AIMessage(
            content="",
            id="ai-1",
            tool_calls=[{"name": "weather", "args": {"city": "서울", "days": 2}, "id": "call_1", "type": "tool_call"}],
            usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
            response_metadata={"model_name": "smollm2", "finish_reason": "tool_calls"},
        ),
        ToolMessage('{"temp": 21.5}', tool_call_id="call_1", name="weather", artifact={"raw": [1, 2]}),
        AIMessage([{"type": "text", "text": "서울은 21.5도예요."}], name="saem"),
    ]


def test_every_message_type_round_trips_exactly(db: MemoryDB) -> None:
    history = SQLiteChatMessageHistory("s1", db, "alice")
    history.add_messages(a_turn())
    loaded = SQLiteChatMessageHistory("s1", db, "alice").messages
    assert loaded == a_turn()
    assert [type(m) for m in loaded] == [SystemMessage, HumanMessage, AIMessage, ToolMessage, AIMessage]
    ai = loaded[2]
    assert isinstance(ai, AIMessage) and ai.tool_calls[0]["args"] == {"city": "서울", "days": 2}
    assert ai.usage_metadata is not None and ai.usage_metadata["total_tokens"] == 19
    assert isinstance(loaded[3], ToolMessage) and loaded[3].tool_call_id == "call_1"


def test_messages_are_json_not_pickle(db: MemoryDB) -> None:
    SQLiteChatMessageHistory("s1", db, "alice").add_messages(a_turn())
    with db.read() as s:
        first = s.scalars(select(ChatMessage.data).order_by(ChatMessage.seq)).first()
    assert first is not None and first.startswith('{"type": "system"') and "너는" in first


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_args = st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), _text, st.booleans()), max_size=3)
_messages = st.one_of(
    st.builds(HumanMessage, content=_text),
    st.builds(SystemMessage, content=_text),
    st.builds(
        lambda c, name, args, n: AIMessage(
            content=c,
            tool_calls=[{"name": name, "args": args, "id": f"c{n}", "type": "tool_call"}],
            usage_metadata={"input_tokens": n, "output_tokens": 1, "total_tokens": n + 1},
        ),
        _text,
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
        _args,
        st.integers(0, 10_000),
    ),
    st.builds(lambda c, n: ToolMessage(c, tool_call_id=f"c{n}"), _text, st.integers(0, 10_000)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_messages, min_size=1, max_size=6))
def test_round_trip_property(db: MemoryDB, messages: list[BaseMessage]) -> None:
    history = SQLiteChatMessageHistory(uuid.uuid4().hex, db, "alice")
    history.add_messages(messages)
    assert history.messages == messages


def test_order_follows_the_sequence_across_calls_and_last_n(db: MemoryDB) -> None:
    history = SQLiteChatMessageHistory("s1", db, "alice")
    seqs = history.append([HumanMessage("1"), AIMessage("2")])
    history.add_message(HumanMessage("3"))
    history.add_messages([AIMessage("4")])
    assert [m.content for m in history.messages] == ["1", "2", "3", "4"]
    assert [m.content for m in history.last(2)] == ["3", "4"]
    assert history.last(0) == []
    assert seqs[0] < seqs[1]


def test_sessions_carry_title_state_times_and_user(db: MemoryDB) -> None:
    history = SQLiteChatMessageHistory("s1", db, "alice")
    assert history.info() is None and history.get_state() == {} and history.messages == []
    history.add_messages([SystemMessage("sys"), HumanMessage("LoRA와 RAG의 차이\n자세히"), AIMessage("...")])
    info = history.info()
    assert info is not None
    assert (info.id, info.user_id, info.title, info.n_messages) == ("s1", "alice", "LoRA와 RAG의 차이", 3)
    assert info.created <= info.updated
    history.set_state({"lang": "ko", "turn": 1})
    assert history.update_state(turn=2) == {"lang": "ko", "turn": 2}
    assert SQLiteChatMessageHistory("s1", db, "alice").get_state() == {"lang": "ko", "turn": 2}
    history.set_title("비교")
    assert history.title == "비교"
    with pytest.raises(TypeError):
        history.set_state({"bad": object()})
    assert history.get_state() == {"lang": "ko", "turn": 2}


def test_long_first_message_gives_a_short_title(db: MemoryDB) -> None:
    history = SQLiteChatMessageHistory("s1", db, "alice")
    history.set_state({"x": 1})  # the session exists before its first message
    history.add_messages([HumanMessage("가" * 200)])
    assert history.title is not None and len(history.title) == 60 and history.title.endswith("…")


def test_list_and_delete_sessions_per_user(db: MemoryDB) -> None:
    for sid, user in [("a1", "alice"), ("a2", "alice"), ("b1", "bob")]:
        SQLiteChatMessageHistory(sid, db, user).add_messages([HumanMessage(f"hi from {sid}")])
    SQLiteChatMessageHistory("a1", db, "alice").add_messages([AIMessage("latest")])
    assert [s.id for s in list_sessions(db, "alice")] == ["a1", "a2"]  # most recently updated first
    assert [s.id for s in list_sessions(db, "bob")] == ["b1"]
    assert delete_session(db, "alice", "b1") is False  # not hers: untouched
    assert SQLiteChatMessageHistory("b1", db, "bob").messages != []
    assert SQLiteChatMessageHistory("a1", db, "alice").delete() is True
    assert [s.id for s in list_sessions(db, "alice")] == ["a2"]
    assert SQLiteChatMessageHistory("a1", db, "alice").messages == []
    with db.read() as s:
        assert s.scalars(select(ChatMessage).where(ChatMessage.session_id == "a1")).first() is None


def test_another_users_session_is_forbidden(db: MemoryDB) -> None:
    SQLiteChatMessageHistory("s1", db, "alice").add_messages([HumanMessage("secret")])
    mallory = SQLiteChatMessageHistory("s1", db, "mallory")
    with pytest.raises(SessionForbidden):
        _ = mallory.messages
    with pytest.raises(SessionForbidden):
        mallory.add_messages([HumanMessage("mine now")])
    with pytest.raises(SessionForbidden):
        mallory.clear()
    with pytest.raises(SessionForbidden):
        mallory.set_state({})
    assert [m.content for m in SQLiteChatMessageHistory("s1", db, "alice").messages] == ["secret"]


def test_clear_keeps_state_and_title(db: MemoryDB) -> None:
    history = SQLiteChatMessageHistory("s1", db, "alice")
    history.add_messages([HumanMessage("hello")])
    history.set_state({"k": 1})
    history.clear()
    assert history.messages == []
    assert history.get_state() == {"k": 1} and history.title == "hello"


async def test_async_methods(db: MemoryDB) -> None:
    history = SQLiteChatMessageHistory("s1", db, "alice")
    await history.aadd_messages([HumanMessage("a"), AIMessage("b")])
    assert [m.content for m in await history.aget_messages()] == ["a", "b"]
    await history.aclear()
    assert await history.aget_messages() == []


def _write(db_path: str, writer: str, n: int, start: threading.Barrier | None = None) -> None:
    history = SQLiteChatMessageHistory("shared", db_path, "alice")
    if start is not None:
        start.wait()
    for i in range(n):
        history.add_messages([HumanMessage(f"{writer}-{i}"), AIMessage(f"{writer}-{i}-reply")])
        time.sleep(0.002)  # a pause between turns, as in a chat, so the writers interleave


def _assert_all_present(db_path: Path, writers: list[str], n: int) -> None:
    contents = [str(m.content) for m in SQLiteChatMessageHistory("shared", db_path, "alice").messages]
    assert len(contents) == 2 * n * len(writers)
    for w in writers:
        mine = [c for c in contents if c.startswith(f"{w}-")]
        assert mine == [x for i in range(n) for x in (f"{w}-{i}", f"{w}-{i}-reply")]  # ordered, pairs contiguous
    for i in range(0, len(contents), 2):  # each add_messages call landed as one block
        assert contents[i + 1] == contents[i] + "-reply"


def test_two_threads_on_one_session_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "saem.db"
    MemoryDB.open(path)
    start = threading.Barrier(2)
    threads = [threading.Thread(target=_write, args=(str(path), w, 40, start)) for w in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    _assert_all_present(path, ["t1", "t2"], 40)


def _process_writer(db_path: str, writer: str, n: int, ready: object) -> None:
    ready.wait()  # type: ignore[attr-defined]
    _write(db_path, writer, n)


def test_two_processes_on_one_session_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "saem.db"
    MemoryDB.open(path).close()  # no connection open across the fork
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(2)
    procs = [ctx.Process(target=_process_writer, args=(str(path), w, 40, ready)) for w in ("p1", "p2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    _assert_all_present(path, ["p1", "p2"], 40)
