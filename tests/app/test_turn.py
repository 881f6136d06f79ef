"""The turn's shared steps (``TurnDeps.build`` + ``run_turn``): the answer-language rule, the
strategy seam, traces joining a transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel

from saem.app.rag import RagStrategy
from saem.app.traces import TraceStore, TurnTrace
from saem.app.turn import Draft, Strategy, TurnDeps, TurnState, answer_language, ask_turn, run_turn
from saem.app.types import Answer
from saem.memory.history import session_messages
from saem.memory.longterm import LongTermMemory
from saem.settings import Settings
from saem.store.chat import MemoryDB
from saem.testing import HashEmbeddings, ScriptedChatModel

pytestmark = pytest.mark.unit


def settings(**opts: object) -> Settings:
    return Settings.load({"answer_mode": "generate", **opts}, environ={})


def make_deps(settings: Settings, model: BaseChatModel, retrieve: Callable[[str, int], Any], db: Path) -> TurnDeps:
    """The turn's dependencies over one fresh store at ``db``, as ``Saem`` builds them."""
    store = MemoryDB.open(db)
    ltm = LongTermMemory(store, HashEmbeddings(64))
    return TurnDeps.build(settings, model, retrieve, store, ltm, TraceStore(store))


def stream(deps: TurnDeps, question: str, *, strategy: Strategy | None = None, **ids: str) -> Iterator[str | Answer]:
    """One turn's pieces (what ``Saem.stream`` yields): the documents answer unless ``strategy``."""
    return run_turn(deps, strategy or RagStrategy(deps), {"question": question, **ids})


def ask(deps: TurnDeps, question: str, *, strategy: Strategy | None = None, **ids: str) -> Answer:
    """One turn's stored Answer (what ``Saem.ask`` returns)."""
    return ask_turn(deps, strategy or RagStrategy(deps), question, **ids)


@pytest.mark.parametrize(
    ("forced", "question", "expected"),
    [
        ("auto", "LoRA는 무엇을 학습하나요?", "ko"),
        ("auto", "What does LoRA train?", "en"),
        ("auto", "42?", "en"),  # too short to tell
        ("ko", "What does LoRA train?", "ko"),
        ("en", "LoRA는 무엇을 학습하나요?", "en"),
    ],
)
def test_the_answer_language_is_forced_or_the_questions(forced: str, question: str, expected: str) -> None:
    assert answer_language(settings(answer_language=forced), question) == expected


class Echo:
    """A third strategy: answers with the question reversed, word by word, in two tokens."""

    memory = False

    def __init__(self) -> None:
        self.seen: list[TurnState] = []

    def answer(self, state: TurnState) -> Iterator[str | Draft]:
        self.seen.append(state)
        words = state.question.split()[::-1]
        yield " ".join(words[:1])
        yield " " + " ".join(words[1:])
        yield Draft(" ".join(words))


def test_any_strategy_gets_the_turns_history_language_storage_and_trace(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=[])
    deps = make_deps(settings(answer_language="ko"), model, lambda q, k: [], tmp_path / "saem.db")
    echo = Echo()
    first = ask(deps, "one two three", session_id="s", user_id="u", strategy=echo)
    pieces = list(stream(deps, "remember four five", session_id="s", user_id="u", strategy=echo))
    assert pieces[:-1] == ["five", " four remember"] and isinstance(pieces[-1], Answer)
    assert (first.text, first.language, first.abstained) == ("three two one", "ko", False)
    # the strategy saw the stored first turn; with memory=False, "remember …" is just a question
    assert [m.text for m in echo.seen[1].history] == ["one two three", "three two one"]
    assert deps.ltm.memories("u") == [] and model.prompts == []
    t = deps.traces.get(first.trace_id)
    assert t is not None and (t.question, t.answer, t.language) == ("one two three", "three two one", "ko")
    assert {"load", "persist", "total"} <= set(t.timings)


def test_a_trace_added_in_a_session_commits_or_rolls_back_with_it(tmp_path: Path) -> None:
    db = MemoryDB.open(tmp_path / "saem.db")
    traces = TraceStore(db)
    with db.write() as s:
        traces.add(TurnTrace(id="kept", session_id="s", user_id="u", question="q"), session=s)
    with pytest.raises(RuntimeError), db.write() as s:
        traces.add(TurnTrace(id="lost", session_id="s", user_id="u", question="q"), session=s)
        raise RuntimeError("a later write of the turn failed")
    assert traces.get("kept") is not None and traces.get("lost") is None


# --- the answer-strategy seam: every strategy keeps the same contract ----------------------------

CALC = '{"choice": {"action": "use_tool", "tool": "calculator", "arguments": {"expression": "17*23"}}}'


def strategy_deps(tmp_path: Path, kind: str) -> tuple[TurnDeps, object, str]:
    """A turn's dependencies, one strategy of ``kind`` over its scripted model, and a question for it."""
    from langchain_core.documents import Document

    from saem.app.agent import AgentStrategy, tool_session

    scripts = {
        "rag": ["Top-p keeps the smallest set of tokens [1]."],
        "router": [CALC, "17 times 23 is 391."],
        "loop": ["17 times 23 is 391."],
        "echo": [],
    }
    doc = Document(page_content="Top-p sampling keeps the smallest set of tokens.", metadata={"chunk_id": 1,
                   "source": "/d/s.md", "start": 0, "end": 48, "heading": "", "score": 0.9})  # fmt: skip
    model = ScriptedChatModel(script=scripts[kind])
    deps = make_deps(settings(), model, lambda q, k: [doc], tmp_path / "saem.db")
    if kind == "rag":
        return deps, RagStrategy(deps), "What does top-p sampling keep?"
    if kind == "echo":
        return deps, Echo(), "one two three"
    session = tool_session(["calculator"], retrieve=lambda q, k: [doc], memory=deps.ltm, user_id="u")
    return deps, AgentStrategy(model, session, agent=kind, history_turns=4), "What is 17 times 23?"


@pytest.mark.parametrize("kind", ["rag", "router", "loop", "echo"])
def test_every_strategy_streams_tokens_then_one_answer_that_is_stored_and_traced(tmp_path: Path, kind: str) -> None:
    deps, strategy, question = strategy_deps(tmp_path, kind)
    pieces = list(stream(deps, question, session_id="s", user_id="u", strategy=strategy))  # type: ignore[arg-type]
    *tokens, answer = pieces
    assert tokens and all(isinstance(t, str) for t in tokens) and isinstance(answer, Answer)
    assert "".join(tokens).strip() == answer.text and answer.text and not answer.abstained
    assert [(m.type, m.text) for m in session_messages(deps.db, "s")] == [("human", question), ("ai", answer.text)]
    assert session_messages(deps.db, "s")[1].response_metadata["trace_id"] == answer.trace_id
    t = deps.traces.get(answer.trace_id)
    assert t is not None and (t.question, t.answer, t.agent) == (question, answer.text, answer.agent)
    assert answer.agent == ("" if kind in ("rag", "echo") else kind)


def test_a_turn_is_stored_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Question, answer, memory provenance and trace commit in one transaction: a failing trace
    write leaves no half-stored turn behind (it used to leave the messages without their trace)."""
    model = ScriptedChatModel(script=[])
    deps = make_deps(settings(), model, lambda q, k: [], tmp_path / "saem.db")
    ask(deps, "one two", session_id="s", user_id="u", strategy=Echo())

    def broken(*args: object, **kwargs: object) -> str:
        raise OSError("disk full while writing the trace")

    monkeypatch.setattr(deps.traces, "add", broken)
    with pytest.raises(OSError, match="disk full"):
        ask(deps, "three four", session_id="s", user_id="u", strategy=Echo())
    assert [m.text for m in session_messages(deps.db, "s")] == ["one two", "two one"]
    monkeypatch.undo()
    again = ask(deps, "three four", session_id="s", user_id="u", strategy=Echo())
    assert [m.text for m in session_messages(deps.db, "s")][-2:] == ["three four", "four three"]
    assert deps.traces.get(again.trace_id) is not None
