"""``SaemRetriever`` against langchain-tests' ``RetrieversIntegrationTests`` (all fakes: unit tier)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from saem.app.saem import Saem
from saem.retrieval.retriever import SaemRetriever
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit

DOCS = {
    "sampling.md": "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose mass exceeds p.\n\n"
    "## Temperature\n\nTemperature rescales the logits before the softmax.\n",
    "lora.md": "# LoRA\n\nLoRA trains two small low-rank matrices instead of the full weight matrix.\n",
    "ko.md": "# 양자화\n\n양자화는 가중치를 적은 비트로 저장합니다. 4비트 양자화는 메모리를 줄입니다.\n",
    "faiss.txt": "FAISS finds nearest neighbours by inner product over dense vectors.\n",
}

_APP: dict[str, Saem] = {}


@pytest.fixture(scope="module", autouse=True)
def _data_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("retriever")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    app = Saem(data_dir=root / "data", embedder=HashEmbeddings(64))
    app.ingest(root / "docs")
    _APP["app"] = app
    yield
    _APP.clear()


class TestSaemRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return SaemRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"searcher": _APP["app"].searcher, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "What does top-p sampling keep?"


def test_as_retriever_defaults_to_retrieve_k_and_takes_filters() -> None:
    app = _APP["app"]
    retriever = app.as_retriever()
    assert isinstance(retriever, SaemRetriever) and retriever.k == app.settings.retrieve_k == 5
    docs = retriever.invoke("quantization 양자화", filters={"source": {"$glob": "*.md"}}, k=3)
    assert len(docs) == 3 and all(Path(d.metadata["source"]).suffix == ".md" for d in docs)
    assert docs[0].metadata["source"].endswith("ko.md")


def test_invoke_rejects_unknown_keywords_and_blank_queries() -> None:
    retriever = _APP["app"].as_retriever(k=1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        retriever.invoke("LoRA", top_k=3)
    with pytest.raises(ValueError, match="query is empty"):
        retriever.invoke("  ")


async def test_batch_and_async_agree_with_invoke() -> None:
    retriever = _APP["app"].as_retriever(k=2)
    sync = [d.id for d in retriever.invoke("LoRA low-rank")]
    assert [d.id for d in await retriever.ainvoke("LoRA low-rank")] == sync
    assert [[d.id for d in docs] for docs in retriever.batch(["LoRA low-rank", "FAISS"])][0] == sync


def test_saem_retrieve_matches_the_retriever(tmp_path: Path) -> None:
    app = _APP["app"]
    assert [d.id for d in app.retrieve("FAISS inner product", k=2)] == [
        d.id for d in app.as_retriever(k=2).invoke("FAISS inner product")
    ]
    assert Saem(data_dir=tmp_path, embedder=HashEmbeddings(64)).retrieve("anything") == []
