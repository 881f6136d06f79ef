"""Chat turns through the ``Saem`` facade with fakes: streaming, the LCEL chain, memory with its
provenance (explicit commands and extraction after a turn), forgetting, concurrent turns."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import Runnable
from sqlalchemy import select

from saem.app.saem import Saem
from saem.app.types import Answer
from saem.store.chat import ChatMessage
from saem.testing import HashEmbeddings, ScriptedChatModel, run_in_threads, tool_call

pytestmark = pytest.mark.unit

DOCS = {
    "sampling.md": "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose probability mass exceeds p.\n\n"
    "## Temperature\n\nTemperature rescales the logits before the softmax.\n",
    "lora.md": "# LoRA\n\nLoRA trains two small low-rank matrices instead of the full weight matrix.\n",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("saem-turns")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    Saem(data_dir=root / "data", embedder=HashEmbeddings(64)).ingest(root / "docs")
    return root / "data"


def make_app(data_dir: Path, tmp_path: Path, script: list[Any], **settings: Any) -> tuple[Saem, ScriptedChatModel]:
    shutil.copytree(data_dir, tmp_path / "data")
    app = Saem(data_dir=tmp_path / "data", embedder=HashEmbeddings(64), answer_mode="generate", **settings)
    model = ScriptedChatModel(script=script)
    app._chat_model = model  # the facade has no chat-model argument; tests inject the fake here
    return app, model


def question_seqs(app: Saem, session_id: str) -> list[int]:
    """The ``seq`` of each stored question of the session, oldest first."""
    with app._memory().db.read() as s:
        rows = s.scalars(
            select(ChatMessage.seq)
            .where(ChatMessage.session_id == session_id, ChatMessage.type == "human")
            .order_by(ChatMessage.seq)
        )
        return list(rows)


def test_stream_yields_tokens_then_the_answer_and_chain_is_the_same_runnable(data_dir: Path, tmp_path: Path) -> None:
    app, model = make_app(data_dir, tmp_path, ["Top-p keeps the smallest set [1].", "Temperature rescales logits [1]."])
    pieces = list(app.stream("What does top-p sampling keep?", session_id="s1", user_id="alice"))
    *tokens, answer = pieces
    assert tokens and all(isinstance(t, str) for t in tokens)
    assert isinstance(answer, Answer) and "".join(tokens).strip() == answer.text
    assert answer.citations and answer.citations[0].source.endswith("sampling.md")
    assert isinstance(app.chain, Runnable)
    again = app.chain.invoke(
        {"question": "What does temperature do to the logits?", "session_id": "s1", "user_id": "alice"}
    )
    assert isinstance(again, Answer) and again.text == "Temperature rescales logits [1]."
    assert [m.type for m in app.history("s1")] == ["human", "ai", "human", "ai"]
    assert len(model.prompts) == 2


def test_a_remembered_fact_carries_its_session_and_turn_and_forget_removes_it(data_dir: Path, tmp_path: Path) -> None:
    app, _ = make_app(data_dir, tmp_path, ["Top-p keeps the smallest set [1]."])
    app.ask("What does top-p sampling keep?", session_id="s1", user_id="alice")
    reply = app.ask("Remember that my favourite sampler is top-p", session_id="s1", user_id="alice")
    assert not reply.abstained
    [memory] = app.memories("alice")
    assert memory.text == "my favourite sampler is top-p"
    assert (memory.source_session, memory.source_turn) == ("s1", question_seqs(app, "s1")[1])
    assert app.memories("bob") == []
    assert app.forget("bob", id=memory.id) == []  # another user's id removes nothing
    [gone] = app.forget("alice", query="my favourite sampler is top-p")
    assert gone.id == memory.id and app.memories("alice") == []


def test_extraction_after_a_turn_stores_facts_with_provenance_and_a_failure_loses_nothing(
    data_dir: Path, tmp_path: Path
) -> None:
    ops = {"operations": [{"action": "ADD", "text": "The user's thesis is about LoRA", "target": None}]}
    script = [
        "LoRA trains two small matrices [1].",
        tool_call("MemoryOps", ops),
        "Top-p keeps the smallest set [1].",
        "not a tool call, not JSON",  # a malformed extraction: logged, the turn is kept
    ]
    app, model = make_app(data_dir, tmp_path, script, memory_extract=True)
    first = app.ask("My thesis is about LoRA. What does LoRA train?", session_id="s1", user_id="alice")
    assert first.text == "LoRA trains two small matrices [1]."
    [memory] = app.memories("alice")
    assert memory.text == "The user's thesis is about LoRA"
    assert (memory.source_session, memory.source_turn) == ("s1", question_seqs(app, "s1")[0])
    second = app.ask("What does top-p sampling keep?", session_id="s1", user_id="alice")
    assert second.text == "Top-p keeps the smallest set [1]."
    assert len(app.history("s1")) == 4 and len(app.memories("alice")) == 1
    assert len(model.prompts) == 4  # answer, extraction, answer, extraction
    assert "LoRA" in model.prompts[1][-1].text  # the extraction saw the turn


def test_concurrent_chain_turns_on_one_session_lose_nothing(data_dir: Path, tmp_path: Path) -> None:
    n = 8
    app, _ = make_app(data_dir, tmp_path, [f"Answer number {i} [1]." for i in range(n)], prefill_next_turn=False)
    assert app._turns() is not None  # built once, before the threads

    def turn(i: int) -> None:
        app.ask(f"Question number {i} about top-p sampling?", session_id="shared", user_id="alice")

    assert run_in_threads(turn, n) == []
    history = app.history("shared")
    assert len(history) == 2 * n
    for human, ai in zip(history[::2], history[1::2], strict=True):  # each turn's pair stays contiguous
        assert human.type == "human" and ai.type == "ai"
        trace = app.trace(ai.response_metadata["trace_id"])
        assert trace is not None and trace.question == human.text and trace.answer == ai.text
    assert {m.text for m in history[::2]} == {f"Question number {i} about top-p sampling?" for i in range(n)}
