"""The Searcher seam: HybridSearcher and saem.testing.FakeSearcher keep one contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from saem.app.saem import Saem
from saem.app.turn import as_retrieve_fn
from saem.retrieval.types import RetrievalResult, Searcher
from saem.testing import FakeSearcher, HashEmbeddings

pytestmark = pytest.mark.unit

DOCS = {
    "sampling.md": "Top-p sampling keeps the smallest set of tokens whose probability mass exceeds p.",
    "lora.md": "LoRA trains two small low-rank matrices instead of the full weight matrix.",
    "faiss.txt": "FAISS stores dense vectors and finds the nearest neighbours by inner product.",
}


@pytest.fixture(scope="module", params=["hybrid", "fake"])
def searcher(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    if request.param == "fake":
        return FakeSearcher(DOCS)
    root = tmp_path_factory.mktemp("searcher")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    app = Saem(data_dir=root / "data", embedder=HashEmbeddings(256), score_threshold=0.25)
    app.ingest(root / "docs")
    return app.searcher


def test_both_are_searchers(searcher: Searcher) -> None:
    assert isinstance(searcher, Searcher)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_at_most_k_hits_best_first_ranked_from_one(searcher: Searcher, k: int) -> None:
    result = searcher.search("Which matrices does LoRA train?", k=k)
    assert isinstance(result, RetrievalResult) and not result.abstained
    assert 1 <= len(result.hits) <= k
    assert Path(result.hits[0].source).name == "lora.md"
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_a_filter_keeps_only_matching_sources(searcher: Searcher) -> None:
    source = next(s for s in _sources(searcher) if s.endswith("faiss.txt"))
    query = "LoRA matrices and FAISS vectors"  # both lora.md and faiss.txt match it
    assert len(searcher.search(query, k=3).hits) >= 2
    result = searcher.search(query, k=3, filters={"source": source})
    assert result.hits and {h.source for h in result.hits} == {source}


def test_a_malformed_filter_is_a_value_error(searcher: Searcher) -> None:
    with pytest.raises(ValueError, match="unknown filter key"):
        searcher.search("LoRA", k=3, filters={"no_such_key": 1})


def test_an_abstention_has_no_hits_and_a_reason(searcher: Searcher) -> None:
    result = searcher.search("zzzz qqqq", k=3)
    assert result.abstained and result.hits == [] and result.reason


def test_the_turn_reads_either_through_one_normaliser(searcher: Searcher) -> None:
    retrieved = as_retrieve_fn(searcher)("Which matrices does LoRA train?", 2)
    assert not retrieved.abstained and Path(retrieved.documents[0].metadata["source"]).name == "lora.md"
    assert as_retrieve_fn(searcher)("zzzz qqqq", 2).abstained


def _sources(searcher: Searcher) -> list[str]:
    if isinstance(searcher, FakeSearcher):
        return list(searcher.passages)
    return [h.source for h in searcher.search("FAISS vectors, LoRA matrices, Top-p sampling", k=10).hits]
