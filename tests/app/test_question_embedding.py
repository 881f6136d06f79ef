"""One chat turn encodes its question once: long-term memory recall and the search both ask
saem's embedder for the question's query vector, and its query cache serves the second ask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from saem.app.saem import Saem
from saem.models.embedders import SentenceTransformerEmbeddings
from saem.models.registry import resolve
from saem.testing import HashEmbeddings, ScriptedChatModel, features

pytestmark = pytest.mark.unit

FACT = "my favourite sampler is top-p"
QUESTION = "What does top-p sampling keep?"


class CountingModel:
    """Stands in for the SentenceTransformer under saem's embedder: HashEmbeddings' vectors (so
    ingest, search and recall work as with the fake) and every text it encoded, by kind."""

    prompts: dict[str, str] = {}
    max_seq_length = None

    def __init__(self) -> None:
        self.hash = HashEmbeddings(64)
        self.queries: list[str] = []
        self.documents: list[str] = []

    def encode_query(self, texts: list[str], **kw: Any) -> np.ndarray:
        self.queries += texts
        return np.asarray(self.hash.embed_documents(texts), dtype=np.float32)

    def encode_document(self, texts: list[str], **kw: Any) -> np.ndarray:
        self.documents += texts
        return np.asarray(self.hash.embed_documents(texts), dtype=np.float32)

    def get_embedding_dimension(self) -> int:
        return 64

    def __getitem__(self, index: int) -> CountingModel:
        return self  # the first module: the one that counts tokens

    def count_tokens(self, text: str) -> int:
        return len(features(text))


def test_a_turn_with_memory_encodes_its_question_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = CountingModel()
    monkeypatch.setattr(SentenceTransformerEmbeddings, "_build", lambda self: model)
    (tmp_path / "embedder").mkdir()
    (tmp_path / "embedder" / "config.json").write_text("{}", encoding="utf-8")
    embedder = SentenceTransformerEmbeddings(resolve(str(tmp_path / "embedder"), "embed"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "sampling.md").write_text(
        "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose probability mass exceeds p.\n",
        encoding="utf-8",
    )
    app = Saem(data_dir=tmp_path / "data", embedder=embedder, answer_mode="generate", memory_min_score=-1.0)
    app.ingest(tmp_path / "docs")
    app._chat_model = ScriptedChatModel(script=["Top-p keeps the smallest set of tokens [1]."])
    app.ask(f"remember that {FACT}", session_id="s1", user_id="alice")  # stores the fact (as a passage)
    model.queries.clear()

    answer = app.ask(QUESTION, session_id="s2", user_id="alice")  # a new session: nothing to condense
    assert answer.memories == [FACT]  # memory recall embedded the question ...
    assert answer.sources and answer.sources[0].source.endswith("sampling.md")  # ... and so did the search
    assert answer.standalone_question == QUESTION
    assert model.queries == [QUESTION]  # once
    assert embedder.query_cache.hits == 1
