"""A document turn end to end (``TurnDeps.build`` + ``ask_turn``, what ``Saem.ask`` runs): packaged
SmolLM2 + USE-m, real SQLite, ingest of a copy of data/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from saem.app.language import language_matches
from saem.app.rag import RagStrategy
from saem.app.traces import TraceStore
from saem.app.turn import TurnDeps, ask_turn
from saem.app.types import Answer
from saem.ingest.pipeline import ingest
from saem.memory.history import list_sessions, session_messages
from saem.memory.longterm import LongTermMemory
from saem.models.embedders import load_embedder
from saem.models.llamacpp import LlamaCppChatModel
from saem.retrieval.hybrid import HybridConfig, HybridSearcher
from saem.settings import Settings
from saem.store.catalogue import Catalogue, Chunk
from saem.store.chat import MemoryDB, MemoryRow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> tuple[Settings, Any, Any, Any]:
    """Settings, searcher, chat model and embedder over an ingested copy of data/ (built once)."""
    root = tmp_path_factory.mktemp("chat")
    docs = root / "docs"
    shutil.copytree(repo_root / "data", docs, ignore=shutil.ignore_patterns("qa.jsonl"))
    settings = Settings.load(
        {"data_dir": str(root / "data"), "n_ctx": 2048, "max_tokens": 96, "temperature": 0.0, "retrieve_k": 3},
        environ={},
    )
    embedder = load_embedder(settings)
    report = ingest(settings, [docs], embedder=embedder)
    assert report.chunks_written > 0
    searcher = HybridSearcher(settings.data_dir, embedder, config=HybridConfig.from_settings(settings))
    return settings, searcher, LlamaCppChatModel.from_settings(settings), embedder


def _deps(parts: tuple[Settings, Any, Any, Any], **changes: Any) -> TurnDeps:
    settings, searcher, model, embedder = parts
    settings = settings.model_copy(update=changes) if changes else settings
    db = MemoryDB.open(settings.db_path)
    return TurnDeps.build(settings, model, searcher, db, LongTermMemory(db, embedder), TraceStore(db))


def ask(deps: TurnDeps, question: str, **ids: str) -> Answer:
    """One document turn's stored Answer (what ``Saem.ask`` returns)."""
    return ask_turn(deps, RagStrategy(deps), question, **ids)


@pytest.fixture(scope="module")
def deps(parts: tuple[Settings, Any, Any, Any]) -> TurnDeps:
    """The defaults: with the packaged model, answer_mode auto answers extractively."""
    return _deps(parts)


@pytest.fixture(scope="module")
def generating(parts: tuple[Settings, Any, Any, Any]) -> TurnDeps:
    """The same store and models, answering with the model (answer_mode = "generate")."""
    return _deps(parts, answer_mode="generate")


def _chunks(deps: TurnDeps) -> dict[str, Any]:
    cat = Catalogue.open(deps.settings.db_path, readonly=True)
    with cat.read() as s:
        return {str(c.id): c.text for c in s.scalars(select(Chunk))}


def _check_turn(deps: TurnDeps, answer: Any, expected_source: str) -> None:
    assert not answer.abstained and answer.text.strip()
    chunks = _chunks(deps)
    assert answer.sources and any(Path(s.source).name == expected_source for s in answer.sources)
    for s in answer.sources:  # every [n] the model saw is a real chunk, shown as stored (or cut)
        assert s.chunk_id in chunks and chunks[s.chunk_id].startswith(s.text.removesuffix(" …"))
        assert s.start is not None and s.end is not None and s.end > s.start
    for c in answer.citations:  # whatever the small model cited resolves against those chunks
        assert c.status == "invalid" or c.chunk_id in {s.chunk_id for s in answer.sources}
    b = answer.budget
    assert b is not None and 0 < b.prompt_tokens <= b.n_ctx - b.reserved_output and b.n_ctx == 2048
    trace = deps.traces.get(answer.trace_id)
    assert trace is not None and trace.prompt.startswith("<|im_start|>system")
    call = trace.model_calls[-1]
    assert call["prompt_tokens"] == b.prompt_tokens  # the builder counted exactly what the model evaluated


def test_english_and_korean_questions_end_to_end(generating: TurnDeps) -> None:
    deps = generating
    en = ask(deps, "What does top-p sampling control?", session_id="en", user_id="u")
    _check_turn(deps, en, "en_sampling.html")
    assert en.language == "en"
    ko = ask(deps, "LoRA 파인튜닝에서 랭크 r은 무엇을 정하나요?", session_id="ko", user_id="u")
    _check_turn(deps, ko, "ko_lora_finetuning.md")
    assert ko.language == "ko" and "한국어로" in deps.traces.get(ko.trace_id).prompt  # type: ignore[union-attr]
    assert language_matches(ko.text, "ko") or ko.notices  # answered in Korean, or said it did not


def test_memory_is_per_user_and_forgettable(deps: TurnDeps) -> None:
    ack = ask(deps, "remember that my favourite sampler is top-p", session_id="m1", user_id="alice")
    assert "top-p" in ack.text
    a = ask(deps, "Which sampling method do I like best?", session_id="m2", user_id="alice")
    assert a.memories == ["my favourite sampler is top-p"]
    assert "my favourite sampler is top-p" in deps.traces.get(a.trace_id).prompt  # type: ignore[union-attr]
    b = ask(deps, "Which sampling method do I like best?", session_id="m3", user_id="bob")
    assert b.memories == [] and "my favourite sampler" not in deps.traces.get(b.trace_id).prompt  # type: ignore[union-attr]
    removed = deps.ltm.forget("alice", query="my favourite sampler is top-p")
    assert [m.text for m in removed] == ["my favourite sampler is top-p"]
    with deps.db.read() as s:
        assert list(s.scalars(select(MemoryRow.text).where(MemoryRow.user_id == "alice"))) == []
    c = ask(deps, "Which sampling method do I like best?", session_id="m4", user_id="alice")
    assert c.memories == []
    assert [s.id for s in list_sessions(deps.db, "alice")][:1] == ["m4"] and len(session_messages(deps.db, "m2")) == 2


def test_korean_question_gets_a_korean_cited_answer_with_the_packaged_model(deps: TurnDeps) -> None:
    # SmolLM2-135M cannot write Korean; the default answer mode for it (extractive) must still answer
    # in Korean, in the documents' words, with a citation that resolves to the right chunk
    assert deps.settings.answer_mode == "auto" and deps.settings.chat_model == "packaged:smollm2"
    answer = ask(deps, "LoRA에서 랭크 r은 보통 어떤 값을 쓰나요?", session_id="ko-cited", user_id="u")
    assert not answer.abstained and answer.language == "ko"
    assert language_matches(answer.text, "ko"), answer.text
    assert "4~64" in answer.text, answer.text
    cited = [c for c in answer.citations if c.status in ("verified", "unverified")]
    assert cited and all(c.chunk_id in _chunks(deps) for c in cited)
    assert any(Path(c.source or "").name == "ko_lora_finetuning.md" for c in cited)
