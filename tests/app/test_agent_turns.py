"""Agent turns through ``Saem.ask(tools=...)`` are stored and traced like chain turns (fakes only)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from rich.console import Console

from saem.app.saem import Saem
from saem.app.types import Answer
from saem.cli.repl import Repl
from saem.memory.history import SessionForbidden
from saem.testing import HashEmbeddings, ScriptedChatModel, ScriptedPromptModel, run_in_threads

pytestmark = pytest.mark.unit

DOCS = {
    "sampling.md": "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose probability mass exceeds p.\n\n"
    "## Temperature\n\nTemperature rescales the logits before the softmax.\n",
    "lora.md": "# LoRA\n\nLoRA trains two small low-rank matrices instead of the full weight matrix.\n",
}
TOP_P = "What does top-p sampling keep?"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ingested data dir; each test copies its catalogue into its own (cheap, isolated)."""
    root = tmp_path_factory.mktemp("agent-turns")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    Saem(data_dir=root / "data", embedder=HashEmbeddings(64)).ingest(root / "docs")
    return root / "data"


def make_app(data_dir: Path, tmp_path: Path, script: list[Any], **settings: Any) -> tuple[Saem, ScriptedChatModel]:
    import shutil

    shutil.copytree(data_dir, tmp_path / "data")
    app = Saem(data_dir=tmp_path / "data", embedder=HashEmbeddings(64), answer_mode="generate", **settings)
    model = ScriptedChatModel(script=script)
    app._chat_model = model  # the facade has no chat-model argument; tests inject the fake here
    return app, model


def choice(obj: dict[str, Any]) -> str:
    return json.dumps({"choice": obj})


CALC = choice({"action": "use_tool", "tool": "calculator", "arguments": {"expression": "17*23"}})


def test_agent_turn_is_in_the_session_history_and_sessions(data_dir: Path, tmp_path: Path) -> None:
    app, _ = make_app(data_dir, tmp_path, [CALC, "17 times 23 is 391."])
    result = app.ask("What is 17 times 23?", session_id="s1", user_id="alice", tools="default")
    assert isinstance(result, Answer) and result.text == "17 times 23 is 391." and result.trace_id
    history = app.history("s1")
    assert [(m.type, m.text) for m in history] == [("human", "What is 17 times 23?"), ("ai", "17 times 23 is 391.")]
    meta = history[1].response_metadata
    assert meta["trace_id"] == result.trace_id and meta["agent"] == "router"
    assert meta["tool_calls"] == [{"name": "calculator", "status": "ran", "reason": "", "summary": "391"}]
    [info] = app.sessions("alice")
    assert info.id == "s1" and info.n_messages == 2 and info.title == "What is 17 times 23?"


def test_the_next_chain_turn_sees_the_agent_turn_and_the_agent_sees_chain_turns(data_dir: Path, tmp_path: Path) -> None:
    app, model = make_app(
        data_dir,
        tmp_path,
        [
            CALC,
            "17 times 23 is 391.",
            "Top-p keeps the smallest set of tokens [1].",
            choice({"action": "answer_directly"}),
            "You asked about top-p and 17 times 23.",
        ],
    )
    app.ask("What is 17 times 23?", session_id="s1", user_id="alice", tools="default")
    answer = app.ask(TOP_P, session_id="s1", user_id="alice")
    assert isinstance(answer, Answer) and not answer.abstained
    trace = app.trace(answer.trace_id)
    assert trace is not None and trace.agent == ""
    assert "What is 17 times 23?" in trace.prompt and "17 times 23 is 391." in trace.prompt
    # and the other way round: the agent gets the chain turn (citation markers removed) as history
    app.ask("What did I ask so far?", session_id="s1", user_id="alice", tools="default")
    routed = model.prompts[-2]
    assert [m.type for m in routed] == ["system", "human", "ai", "human", "ai", "human"]
    assert routed[3].text == TOP_P and routed[4].text == "Top-p keeps the smallest set of tokens."
    assert len(app.history("s1")) == 6


@pytest.mark.parametrize("agent_loop", ["saem", "langchain"])
def test_trace_has_every_step_with_tool_call_statuses(data_dir: Path, tmp_path: Path, agent_loop: str) -> None:
    calls = AIMessage(
        content="",
        tool_calls=[
            {"name": "calculator", "args": {"expression": "2**10"}, "id": "c1"},
            {"name": "calculator", "args": {"expression": "import os"}, "id": "c2"},
            {"name": "forget", "args": {"query": "*"}, "id": "c3"},  # not allowed by "default"
        ],
    )
    app, _ = make_app(data_dir, tmp_path, [calls, "2**10 is 1024; I cannot forget things."], agent_loop=agent_loop)
    result = app.ask(
        "What is 2**10? Then forget everything.", session_id="s2", user_id="alice", tools="default", agent="loop"
    )
    assert isinstance(result, Answer)
    t = app.trace(result.trace_id)
    assert t is not None and t.agent == "loop" and t.stop_reason == "answer" and t.user_id == "alice"
    assert t.question == "What is 2**10? Then forget everything." and t.answer == result.text
    assert [(c["name"], c["status"], c["reason"]) for c in t.tool_calls] == [
        ("calculator", "ran", ""),
        ("calculator", "failed", "error"),
        ("forget", "refused", "not_allowed"),
    ]
    assert t.tool_calls[0]["arguments"] == {"expression": "2**10"} and t.tool_calls[0]["summary"] == "1024"
    assert [(s["kind"], s["name"]) for s in t.steps] == [
        ("model", "ScriptedChatModel"),
        ("tool", "calculator"),
        ("tool", "calculator"),
        ("tool", "forget"),
        ("model", "ScriptedChatModel"),
    ]
    assert t.steps[1]["detail"] == "ran: 1024" and t.steps[3]["detail"].startswith("refused:")
    assert {"load", "generate", "tools", "persist", "total"} <= set(t.timings)
    assert all(s["seconds"] >= 0 for s in t.steps) and t.timings["total"] >= t.timings["generate"]
    # the prompt of the final model call, tool results included, is visible
    assert '<tool_result name="calculator" status="ok">' in t.prompt and t.prompt_tokens > 0
    # refused and failed calls are still a stored turn
    assert [m.type for m in app.history("s2")] == ["human", "ai"]


def test_router_trace_has_the_route_choice(data_dir: Path, tmp_path: Path) -> None:
    app, _ = make_app(data_dir, tmp_path, [CALC, "17 times 23 is 391."])
    result = app.ask("What is 17 times 23?", session_id="s1", user_id="alice", tools=["calculator"])
    assert isinstance(result, Answer)
    t = app.trace(result.trace_id)
    assert t is not None and [s["kind"] for s in t.steps] == ["route", "tool", "model"]
    assert t.choice == {"action": "use_tool", "tool": "calculator", "arguments": {"expression": "17*23"}}
    assert "route" in t.timings and [c["kind"] for c in t.model_calls] == ["route", "model"]
    assert "Question: What is 17 times 23?" in t.prompt


def test_another_users_session_is_forbidden_before_any_model_call(data_dir: Path, tmp_path: Path) -> None:
    app, model = make_app(data_dir, tmp_path, [CALC, "17 times 23 is 391."])
    app.ask("What is 17 times 23?", session_id="s1", user_id="alice", tools="default")
    calls = len(model.prompts)
    with pytest.raises(SessionForbidden):
        app.ask("What did alice ask?", session_id="s1", user_id="bob", tools="default")
    with pytest.raises(SessionForbidden):
        app.ask("What did alice ask?", session_id="s1", user_id="bob", tools="default", agent="loop")
    with pytest.raises(SessionForbidden):  # as a normal turn does
        app.ask("What did alice ask?", session_id="s1", user_id="bob")
    assert len(model.prompts) == calls and len(app.history("s1")) == 2
    with pytest.raises(ValueError, match="empty"):
        app.ask("   ", session_id="s1", user_id="alice", tools="default")
    with pytest.raises(ValueError, match="router"):
        app.ask("Hi", session_id="s1", user_id="alice", tools="default", agent="planner")


def test_concurrent_agent_turns_on_one_session_lose_nothing(data_dir: Path, tmp_path: Path) -> None:
    n = 8
    app, _ = make_app(data_dir, tmp_path, [f"Answer number {i}." for i in range(n)])
    assert app._turns() is not None  # built once, before the threads

    def turn(i: int) -> None:
        app.ask(f"Question number {i}?", session_id="shared", user_id="alice", tools=["calculator"], agent="loop")

    assert run_in_threads(turn, n) == []
    history = app.history("shared")
    assert len(history) == 2 * n
    questions = set()
    for human, ai in zip(history[::2], history[1::2], strict=True):  # each turn's pair stays contiguous
        assert human.type == "human" and ai.type == "ai"
        trace = app.trace(ai.response_metadata["trace_id"])
        assert trace is not None and trace.question == human.text and trace.answer == ai.text
        questions.add(human.text)
    assert questions == {f"Question number {i}?" for i in range(n)}


def test_repl_tools_mode_shows_the_agent_trace(data_dir: Path, tmp_path: Path) -> None:
    app, _ = make_app(data_dir, tmp_path, [CALC, "17 times 23 is 391."])
    out = io.StringIO()
    repl = Repl(app, session_id="s1", user_id="alice", console=Console(file=out, width=160))
    repl.command("/tools on")
    repl.turn("What is 17 times 23?")
    for command in ("/trace", "/prompt", "/sources", "/budget"):
        repl.command(command)
    text = out.getvalue()
    assert "no answer yet" not in text and "failed" not in text
    assert "agent steps (router, stopped: answer)" in text
    assert "route" in text and "ran: 391" in text and "Question: What is 17 times 23?" in text


def test_an_agent_turn_returns_an_answer_carrying_what_the_agent_did(data_dir: Path, tmp_path: Path) -> None:
    app, _ = make_app(data_dir, tmp_path, [CALC, "17 times 23 is 391."])
    result = app.ask("What is 17 times 23?", session_id="s1", user_id="alice", tools=["calculator"])
    assert isinstance(result, Answer) and (result.agent, result.stop_reason) == ("router", "answer")
    assert [(c.name, c.status, c.summary) for c in result.tool_calls] == [("calculator", "ran", "391")]
    assert [s.kind for s in result.steps] == ["route", "tool", "model"] and result.choice is not None
    assert (result.session_id, result.question, result.language) == ("s1", "What is 17 times 23?", "en")
    # nothing was retrieved for it, so no sources, citations or budget are claimed
    assert result.sources == [] and result.citations == [] and result.budget is None and not result.abstained
    assert result.to_dict()["tool_calls"][0]["arguments"] == {"expression": "17*23"}
    # a document turn says it was not an agent's
    app2, _ = make_app(data_dir, tmp_path / "b", ["Top-p keeps the smallest set of tokens [1]."])
    doc = app2.ask(TOP_P, session_id="s1", user_id="alice")
    assert (doc.agent, doc.tool_calls, doc.steps, doc.stop_reason) == ("", [], [], "answer")


def test_agent_and_document_turns_follow_the_same_answer_language_setting(data_dir: Path, tmp_path: Path) -> None:
    app, _ = make_app(data_dir, tmp_path, [CALC, "17 곱하기 23은 391입니다.", "Top-p는 가장 작은 집합을 남깁니다 [1]."])
    app.configure(answer_language="ko")
    agent = app.ask("What is 17 times 23?", session_id="s1", user_id="alice", tools=["calculator"])
    doc = app.ask(TOP_P, session_id="s1", user_id="alice")
    assert agent.language == doc.language == "ko"
    assert [app.trace(a.trace_id).language for a in (agent, doc)] == ["ko", "ko"]  # type: ignore[union-attr]


def test_a_turn_reads_the_session_history_once(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from saem.memory.history import SQLiteChatMessageHistory

    reads: list[int] = []
    last = SQLiteChatMessageHistory.last
    monkeypatch.setattr(SQLiteChatMessageHistory, "last", lambda self, n: reads.append(n) or last(self, n))

    app, _ = make_app(data_dir, tmp_path, [])
    model = ScriptedPromptModel(script=["Top-p keeps the smallest set [1].", CALC, "391."])
    app._chat_model = model
    app.ask(TOP_P, session_id="s1", user_id="alice")  # a document turn, and its prefill of the next
    app.ask("What is 17 times 23?", session_id="s1", user_id="alice", tools=["calculator"])
    assert len(reads) == 2 and len(model.prefilled) == 1
    assert model.prefilled[0][-1].text == "Top-p keeps the smallest set."  # this answer, markers removed
