"""Hybrid retrieval with fakes: fusion math, threshold, rerank fallback, MMR, hostile queries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from saem.app.saem import Saem
from saem.errors import ConfigError
from saem.retrieval.hybrid import (
    HybridConfig,
    HybridSearcher,
    clean_query,
    dominant_script,
    fit_tokens,
    mmr_select,
    relative_fuse,
    rrf_fuse,
    script_agreement,
    script_shares,
)
from saem.retrieval.rerank import EmbedderReranker, Reranker
from saem.store.catalogue import Catalogue
from saem.testing import FakeReranker, HashEmbeddings, features

pytestmark = pytest.mark.unit

DOCS = {
    "sampling.md": "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose probability mass exceeds p. "
    "Temperature rescales the logits before the softmax.\n\n## Penalties\n\nA repetition penalty lowers the "
    "logits of tokens that already appeared.\n",
    "lora.md": "# LoRA\n\nLoRA trains two small low-rank matrices instead of the full weight matrix. "
    "The rank r controls how many parameters are trained.\n",
    "tokens.md": "# 토크나이저\n\n토크나이저는 텍스트를 토큰으로 나눕니다. 한국어는 교착어라서 조사가 붙습니다. "
    "바이트 수준 BPE는 알 수 없는 문자가 없습니다.\n",
    "faiss.txt": "FAISS stores dense vectors and finds the nearest neighbours by inner product.\n",
}


def _ingest(root: Path, docs: dict[str, str], embedder: HashEmbeddings | None = None) -> Saem:
    src = root / "docs"
    src.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (src / name).write_text(text, encoding="utf-8")
    app = Saem(data_dir=root / "data", embedder=embedder or HashEmbeddings(64))
    app.ingest(src)
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Saem:
    return _ingest(tmp_path_factory.mktemp("hybrid"), DOCS)


def _searcher(app: Saem, reranker: Reranker | None = None, **config: object) -> HybridSearcher:
    return HybridSearcher(app.settings.data_dir, app.embedder, reranker=reranker, config=HybridConfig(**config))  # type: ignore[arg-type]


# --- fusion ----------------------------------------------------------------------------------


def test_rrf_exact_values_and_tie_breaks() -> None:
    fused = rrf_fuse({"dense": [1, 2, 3], "lexical": [3, 1]}, {"dense": 1.0, "lexical": 1.0}, 60)
    assert [cid for cid, _ in fused] == [1, 3, 2]
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62, rel=1e-12)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61, rel=1e-12)
    assert scores[2] == pytest.approx(1 / 62, rel=1e-12)
    weighted = dict(rrf_fuse({"dense": [1, 2], "lexical": [2, 1]}, {"dense": 2.0, "lexical": 0.5}, 10))
    assert weighted[1] == pytest.approx(2 / 11 + 0.5 / 12, rel=1e-12)
    assert weighted[2] == pytest.approx(2 / 12 + 0.5 / 11, rel=1e-12)
    # equal scores: the better single-stage rank wins, then the lower id
    assert [c for c, _ in rrf_fuse({"a": [7, 5], "b": [5, 7]}, {}, 60)] == [5, 7]
    assert [c for c, _ in rrf_fuse({"a": [9], "b": [4]}, {}, 60)] == [4, 9]


def test_hits_carry_stage_ranks_consistent_with_the_fusion_formula(app: Saem) -> None:
    result = _searcher(app, fusion="rrf", rrf_k=10, dense_weight=2.0, lexical_weight=0.5).search(
        "LoRA low-rank matrices", k=4
    )
    assert result.hits and not result.abstained
    for hit in result.hits:
        expected = (2.0 / (10 + hit.dense_rank) if hit.dense_rank else 0.0) + (
            0.5 / (10 + hit.lexical_rank) if hit.lexical_rank else 0.0
        )
        assert hit.fused_score == pytest.approx(expected, rel=1e-12)
        assert hit.score == hit.fused_score and hit.rerank_rank is None
    assert [h.fused_rank for h in result.hits] == [1, 2, 3, 4]
    assert result.hits[0].source.endswith("lora.md")


def test_relative_fusion_exact_values_and_tie_breaks() -> None:
    dense = [(1, 0.9), (2, 0.7), (3, 0.5)]  # min-max: 1.0, 0.5, 0.0
    lexical = [(3, 12.0), (1, 4.0)]  # min-max: 1.0, 0.0
    fused = relative_fuse({"dense": dense, "lexical": lexical}, {"dense": 1.0, "lexical": 1.0})
    assert fused == [(1, pytest.approx(1.0)), (3, pytest.approx(1.0)), (2, pytest.approx(0.5))]
    weighted = dict(relative_fuse({"dense": dense, "lexical": lexical}, {"dense": 2.0, "lexical": 0.5}))
    assert weighted == {1: pytest.approx(2.0), 2: pytest.approx(1.0), 3: pytest.approx(0.5)}
    # a one-item or all-equal list normalises to 1; an empty one adds nothing
    assert relative_fuse({"a": [(4, 0.3)], "b": []}, {}) == [(4, 1.0)]
    assert dict(relative_fuse({"a": [(5, 2.0), (6, 2.0)]}, {})) == {5: 1.0, 6: 1.0}
    # equal scores: the better single-stage rank wins, then the lower id
    assert [c for c, _ in relative_fuse({"a": [(7, 1.0), (5, 0.0)], "b": [(5, 1.0), (7, 0.0)]}, {})] == [5, 7]
    assert [c for c, _ in relative_fuse({"a": [(9, 1.0)], "b": [(4, 3.0)]}, {})] == [4, 9]


def test_relative_fusion_is_the_default_and_keeps_score_gaps(app: Saem) -> None:
    assert HybridConfig().fusion == "relative"
    with pytest.raises(ConfigError):
        HybridConfig(fusion="max")
    result = _searcher(app, dense_weight=2.0, lexical_weight=0.5).search("LoRA low-rank matrices", k=4)
    assert result.hits and result.hits[0].source.endswith("lora.md")
    scores = [h.fused_score for h in result.hits]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= sc <= 2.5 + 1e-9 for sc in scores)
    for h in result.hits:  # the first hit of a stage gets its full weight
        if h.dense_rank == 1 and h.lexical_rank == 1:
            assert h.fused_score == pytest.approx(2.5)


def test_a_zero_weight_skips_that_stage(app: Saem) -> None:
    dense_only = _searcher(app, lexical_weight=0.0).search("top-p sampling", k=3)
    assert all(h.lexical_rank is None and h.dense_rank == h.fused_rank for h in dense_only.hits)
    lexical_only = _searcher(app, dense_weight=0.0).search("top-p sampling", k=3)
    assert lexical_only.hits and all(h.dense_rank is None and h.lexical_rank for h in lexical_only.hits)
    with pytest.raises(ConfigError):
        HybridConfig(dense_weight=0.0, lexical_weight=0.0)


LONG_DOC = "\n\n".join(
    f"## Part {i}\n\n" + " ".join(f"{w}{i}" for w in ("apple", "river", "stone", "cloud", "tiger", "lamp") * 12) + "."
    for i in range(8)
)


def test_when_dense_search_decides_alone_a_chunk_is_read_with_its_neighbours(tmp_path: Path) -> None:
    import sqlite3

    app = _ingest(tmp_path, {"long.md": LONG_DOC, **DOCS})
    with sqlite3.connect(app.settings.db_path) as conn:
        rows = conn.execute("SELECT id, source_id, ord, embedding FROM chunks").fetchall()
    assert max(Counter(r[1] for r in rows).values()) > 3  # the long document has inner chunks
    query = "apple3 river3 stone4 top-p"
    qvec = np.asarray(app.embedder.embed_query(query), dtype=np.float32)
    qvec /= np.linalg.norm(qvec)
    cos = {(src, o): float(np.frombuffer(emb, dtype="<f4") @ qvec) for _, src, o, emb in rows}
    place = {cid: (src, o) for cid, src, o, _ in rows}

    def expected(cid: int, weight: float) -> float:
        src, o = place[cid]
        around = [cos[key] for key in ((src, o - 1), (src, o + 1)) if key in cos]
        return cos[(src, o)] + weight * (sum(around) / len(around) if around else cos[(src, o)])

    hits = _searcher(app, lexical_weight=0.0, neighbour_weight=0.5).search(query, k=8).hits
    assert [h.dense_score for h in hits] == pytest.approx([expected(h.chunk_id, 0.5) for h in hits], abs=1e-5)
    assert [h.dense_score for h in hits] == sorted((h.dense_score for h in hits), reverse=True)
    assert all(h.cosine == pytest.approx(cos[place[h.chunk_id]], abs=1e-5) for h in hits)  # the threshold's cosine
    off = _searcher(app, lexical_weight=0.0, neighbour_weight=0.0).search(query, k=8).hits
    assert [h.dense_score for h in off] == pytest.approx([h.cosine for h in off], abs=1e-5)
    # with lexical search voting (a same-script query), dense scores stay plain cosines
    hybrid = _searcher(app, neighbour_weight=0.5).search(query, k=8).hits
    assert all(h.dense_score == pytest.approx(h.cosine, abs=1e-5) for h in hybrid if h.dense_score is not None)
    with pytest.raises(ConfigError, match="neighbour_weight"):
        HybridConfig(neighbour_weight=-0.1)


# --- threshold -------------------------------------------------------------------------------


def test_below_the_threshold_nothing_is_returned_with_a_reason(app: Saem) -> None:
    result = _searcher(app, score_threshold=1.01).search("LoRA rank", k=3)
    assert result.abstained and result.hits == [] and "threshold" in (result.reason or "")
    assert result.documents() == []
    kept = _searcher(app, score_threshold=-1.0).search("LoRA rank", k=3)
    assert not kept.abstained and len(kept.hits) == 3


def test_names_no_chunk_mentions_are_reported_and_the_hits_kept(app: Saem) -> None:
    result = _searcher(app).search("How does FlashAttention compare with FAISS and BPE?", k=3)
    assert result.missing_terms == ["FlashAttention"] and not result.abstained and len(result.hits) == 3
    assert "coverage" in result.timings
    assert _searcher(app).search("FAISS는 무엇을 저장하나요?", k=3).missing_terms == []


def test_threshold_uses_the_cosine_of_the_best_hit(app: Saem) -> None:
    best = _searcher(app).search("LoRA trains low-rank matrices", k=3).hits
    top = max(h.cosine for h in best)
    assert top > 0.3
    assert not _searcher(app, score_threshold=top - 1e-6).search("LoRA trains low-rank matrices", k=3).abstained
    assert _searcher(app, score_threshold=top + 1e-3).search("LoRA trains low-rank matrices", k=3).abstained


def test_an_empty_data_dir_abstains(tmp_path: Path) -> None:
    result = HybridSearcher(tmp_path, HashEmbeddings(64)).search("anything", k=3)
    assert result.abstained and "nothing is ingested" in (result.reason or "")


# --- rerank ----------------------------------------------------------------------------------


class Recording:
    model_id = "fake:recording"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        self.calls.append(list(passages))
        return [float(len(p)) for p in passages]  # longest passage first


class Exploding:
    model_id = "fake:exploding"

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        raise RuntimeError("out of memory")


def test_rerank_reorders_the_capped_candidates_with_truncated_passages(app: Saem) -> None:
    rec = Recording()
    result = _searcher(app, rec, rerank_candidates=3, rerank_max_chars=40).search("tokens logits", k=5)
    assert len(rec.calls) == 1 and len(rec.calls[0]) == 3 and all(len(p) <= 40 for p in rec.calls[0])
    head = result.hits[:3]
    assert [h.rerank_rank for h in head] == [1, 2, 3] and result.reranker == "fake:recording"
    assert all(h.rerank_rank is None for h in result.hits[3:])
    assert [h.score for h in head] == sorted((h.score for h in head), reverse=True)
    assert "rerank" in result.timings


def test_rerank_failure_keeps_the_fused_order_and_warns(app: Saem) -> None:
    plain = _searcher(app).search("top-p temperature", k=4)
    failed = _searcher(app, Exploding()).search("top-p temperature", k=4)
    assert [h.chunk_id for h in failed.hits] == [h.chunk_id for h in plain.hits]
    assert any("out of memory" in w and "fused order" in w for w in failed.warnings)
    assert all(h.rerank_rank is None for h in failed.hits) and failed.reranker is None


def test_a_reranker_returning_the_wrong_number_of_scores_is_a_failure(app: Saem) -> None:
    class Short:
        model_id = "fake:short"

        def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
            return [1.0]

    result = _searcher(app, Short()).search("LoRA", k=3)
    assert result.warnings and len(result.hits) == 3


def test_fake_and_embedder_rerankers_satisfy_the_protocol(app: Saem) -> None:
    assert isinstance(FakeReranker(), Reranker) and isinstance(EmbedderReranker(HashEmbeddings(64)), Reranker)
    scores = EmbedderReranker(HashEmbeddings(64)).rerank("LoRA rank", ["LoRA rank matrices", "top-p sampling"])
    assert scores[0] > scores[1]
    result = _searcher(app, FakeReranker()).search("repetition penalty logits", k=2)
    assert result.hits[0].rerank_score == pytest.approx(1.0) and "Penalties" in result.hits[0].heading


# --- MMR -------------------------------------------------------------------------------------


def test_mmr_select_prefers_novel_items() -> None:
    vecs = np.asarray([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    rel = np.asarray([1.0, 0.99, 0.6])
    assert mmr_select(rel, vecs, 2, lam=1.0) == [0, 1]
    assert mmr_select(rel, vecs, 2, lam=0.5) == [0, 2]
    assert mmr_select(rel, vecs, 5, lam=0.5) == [0, 2, 1]


def test_mmr_pushes_near_duplicates_down(tmp_path: Path) -> None:
    dup = "LoRA adapters train low rank update matrices for attention layers.\n"
    docs = {
        "a.txt": dup,
        "b.txt": dup + "\n",
        "c.txt": dup + "\n\n",
        "d.txt": "Adapters: LoRA keeps the base frozen.\n",
    }
    app = _ingest(tmp_path, docs)
    plain = _searcher(app).search("LoRA adapters low rank matrices", k=2).hits
    assert {Path(h.source).name for h in plain} <= {"a.txt", "b.txt", "c.txt"}
    diverse = _searcher(app, mmr=True, mmr_lambda=0.5).search("LoRA adapters low rank matrices", k=2).hits
    assert "d.txt" in {Path(h.source).name for h in diverse}


# --- hostile queries -------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   \n\t", "\x1b[31m\x1b[0m", "\x00\x07"])
def test_blank_queries_are_a_clear_value_error(app: Saem, query: str) -> None:
    with pytest.raises(ValueError, match="query is empty"):
        app.retrieve(query)


def test_k_must_be_positive(app: Saem) -> None:
    with pytest.raises(ValueError, match="k must be"):
        app.retrieve("LoRA", k=0)


def test_a_huge_query_is_truncated_with_a_warning(app: Saem) -> None:
    result = app.searcher.search("LoRA rank " * 10_000, k=2)
    assert len(result.query) == 2000 and any("99999 characters; only the first 2000" in w for w in result.warnings)
    assert len(result.hits) == 2


@pytest.mark.parametrize(
    "query",
    ['"', '""', "*", "LoRA*", "NEAR(a b)", "a NEAR b", "OR 1=1", "' OR 1=1 --", "col:lora", "AND OR NOT", "(((",
     "🙂🙂", "!!!?", "…", "\x1b[1mLoRA\x1b[0m", "토크나이저\x1b[2J", "^lora", "lora -rank", "{lora}"],
)  # fmt: skip
def test_odd_queries_never_crash(app: Saem, query: str) -> None:
    docs = app.retrieve(query, k=3)
    assert len(docs) == 3  # the dense stage always has candidates in a non-empty data dir
    assert all(isinstance(d.metadata["chunk_id"], int) for d in docs)


def test_ansi_escapes_are_stripped_before_searching() -> None:
    assert clean_query("\x1b[1mLoRA\x1b[0m\x07 rank", 100) == ("LoRA  rank", [])


class LimitedEmbeddings(HashEmbeddings):
    """The fake embedder, reading at most ``max_seq_length`` tokens (one per feature) and
    counting how often it was asked to count."""

    def __init__(self, max_seq_length: int | None) -> None:
        super().__init__(64)  # the same model_id as the app's data dir
        self.max_seq_length = max_seq_length
        self.counted = 0

    def tokenizer_count(self, text: str) -> int:
        self.counted += 1
        return super().tokenizer_count(text)


def test_fit_tokens_keeps_the_longest_prefix_that_fits() -> None:
    words = " ".join(f"w{i}" for i in range(100))  # 100 features
    cut, warnings = fit_tokens(words, 10, lambda t: len(features(t)))
    assert cut == " ".join(f"w{i}" for i in range(10)) and len(warnings) == 1
    assert "100 tokens and the embedder reads 10" in warnings[0]
    assert f"first {len(cut)} of its {len(words)} characters" in warnings[0]
    assert fit_tokens("short query", 10, lambda t: len(features(t))) == ("short query", [])
    assert fit_tokens("abc", 0, len)[0] == "a"  # never blank, whatever the limit
    assert clean_query("x " * 50, 20, max_tokens=3, count_tokens=lambda t: len(t.split())) == (
        "x x x",
        ["the query was 99 characters; only the first 20 were searched",
         "the query was 10 tokens and the embedder reads 3; only the first 5 of its 20 characters were searched"],
    )  # fmt: skip


def test_a_query_longer_than_the_embedders_limit_is_cut_to_fit_with_a_warning(app: Saem) -> None:
    emb = LimitedEmbeddings(8)
    result = HybridSearcher(app.settings.data_dir, emb).search("LoRA rank matrices " * 40, k=2)
    assert len(features(result.query)) == 8 and result.query == "LoRA rank matrices LoRA rank matrices LoRA rank"
    assert any("120 tokens and the embedder reads 8" in w for w in result.warnings)
    assert len(result.hits) == 2 and emb.counted <= 12  # a binary search, not a scan
    # a 100k-character query: cut to max_query_chars first, then to the embedder's limit
    huge = HybridSearcher(app.settings.data_dir, LimitedEmbeddings(8)).search("LoRA rank " * 10_000, k=2)
    assert len(features(huge.query)) == 8 and len(huge.warnings) == 2
    assert "only the first 2000 were searched" in huge.warnings[0] and "embedder reads 8" in huge.warnings[1]


def test_a_query_within_the_limit_or_an_embedder_without_one_is_not_cut(app: Saem) -> None:
    emb = LimitedEmbeddings(8)
    result = HybridSearcher(app.settings.data_dir, emb).search("LoRA rank matrices", k=2)
    assert result.query == "LoRA rank matrices" and result.warnings == [] and emb.counted == 1
    unlimited = LimitedEmbeddings(None)
    long = HybridSearcher(app.settings.data_dir, unlimited).search("LoRA rank " * 100, k=2)
    assert len(long.query) == 999 and long.warnings == [] and unlimited.counted == 0  # no limit: nothing counted

    class Broken(HashEmbeddings):
        @property
        def max_seq_length(self) -> int:
            raise RuntimeError("cannot load")

    class CannotCount(LimitedEmbeddings):
        def tokenizer_count(self, text: str) -> int:
            raise RuntimeError("no tokenizer to count with")

    for emb in (Broken(64), CannotCount(8)):  # the query is searched as it is
        result = HybridSearcher(app.settings.data_dir, emb).search("LoRA rank " * 100, k=2)
        assert result.warnings == [] and len(result.query) == 999 and len(result.hits) == 2


# --- filters, metadata, reload, mismatch ----------------------------------------------------


def test_filters_by_source_glob_and_unknown_keys(app: Saem) -> None:
    docs = app.retrieve("tokens", k=5, filters={"source": {"$glob": "*.txt"}})
    assert docs and all(d.metadata["source"].endswith(".txt") for d in docs)
    with pytest.raises(ValueError, match="unknown filter"):
        app.retrieve("tokens", filters={"colour": "red"})
    assert app.searcher.search("tokens", filters={"source": {"$glob": "*.pdf"}}).abstained
    with pytest.raises(ValueError, match="unknown filter operator"):
        app.retrieve("tokens", filters={"source": {"$regex": ".*"}})


def test_filter_operators_match_the_vector_store_syntax(app: Saem) -> None:
    lora = app.retrieve("LoRA", k=1, filters={"source": {"$glob": "*lora.md"}})[0].metadata["source"]
    assert [d.metadata["source"] for d in app.retrieve("tokens", k=5, filters={"source": lora})] == [lora]
    both = app.retrieve("tokens", k=5, filters={"source": {"$in": [lora, "/nowhere.md"]}})
    assert {d.metadata["source"] for d in both} == {lora}
    assert app.retrieve("tokens", k=5, filters={"heading": {"$in": ["LoRA"]}})[0].metadata["heading"] == "LoRA"


def test_documents_carry_the_span_and_stage_metadata(app: Saem) -> None:
    doc = app.retrieve("토크나이저는 무엇을 하나요?", k=1)[0]
    meta = doc.metadata
    assert meta["source"].endswith("tokens.md") and doc.id == str(meta["chunk_id"])
    assert {"start", "end", "heading", "score", "dense_rank", "lexical_rank", "fused_rank", "rerank_rank"} <= set(meta)
    assert meta["heading"] == "토크나이저" and meta["fused_rank"] == 1 and meta["end"] > meta["start"]


def test_the_index_reloads_after_an_ingest(tmp_path: Path) -> None:
    app = _ingest(tmp_path, {"a.txt": "Quantization stores weights in four bits.\n"})
    assert app.retrieve("zebra giraffe savanna", k=1)[0].metadata["source"].endswith("a.txt")
    (tmp_path / "docs" / "b.txt").write_text("The zebra and the giraffe live on the savanna.\n", encoding="utf-8")
    app.ingest(tmp_path / "docs")
    assert app.retrieve("zebra giraffe savanna", k=1)[0].metadata["source"].endswith("b.txt")


def test_another_embedder_is_a_config_error(app: Saem) -> None:
    with pytest.raises(ConfigError, match="was embedded with"):
        HybridSearcher(app.settings.data_dir, HashEmbeddings(32)).search("LoRA")


# --- cross-lingual queries: the lexical weight follows the script of the top dense hits -------


class AngleEmbeddings(HashEmbeddings):
    """Each chunk at a fixed angle (by a marker it contains), every query at angle 0: the
    dense order is the marker order."""

    MARKERS = ("LoRA는", "저랭크", "Top-p", "토크나이저", "양자화")

    def __init__(self) -> None:
        super().__init__(8)
        self.model_id = "fake:angles"

    @staticmethod
    def _at(angle: float) -> list[float]:
        return [float(np.cos(angle)), float(np.sin(angle))] + [0.0] * 6

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._at(0.1 * next((i + 1 for i, m in enumerate(self.MARKERS) if m in t), 9)) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._at(0.0)


SCRIPT_DOCS = {  # dense order a, b, c, d, e; only c is English
    "a.txt": "LoRA는 저랭크 행렬 두 개만 학습합니다.\n",
    "b.txt": "저랭크 분해로 학습할 매개변수를 줄입니다.\n",
    "c.txt": "Top-p sampling: which tokens does the model train on? Not low-rank matrices.\n",
    "d.txt": "토크나이저는 텍스트를 토큰으로 나눕니다.\n",
    "e.txt": "양자화는 가중치를 4비트로 줄입니다.\n",
}


@pytest.fixture(scope="module")
def script_app(tmp_path_factory: pytest.TempPathFactory) -> Saem:
    return _ingest(tmp_path_factory.mktemp("scripts"), SCRIPT_DOCS, AngleEmbeddings())


@pytest.mark.parametrize(("setting", "weight"), [(0.0, 0.0), (0.25, 0.25), (None, 2.0)])
def test_a_query_whose_top_dense_hits_are_in_another_script_gets_the_cross_lingual_weight(
    script_app: Saem, setting: float | None, weight: float
) -> None:
    # 4 of the top 5 dense hits are Korean, the query English, as is 1 chunk in 5 of the store:
    # cross-lingual (None: lexical_weight, 2.0, for every query)
    result = _searcher(script_app, fusion="rrf", cross_lingual_lexical_weight=setting).search(
        "Which matrices does LoRA train?", k=5
    )
    by_name = {Path(h.source).name: h for h in result.hits}
    assert by_name["c.txt"].lexical_rank == 1 and by_name["a.txt"].lexical_rank == 2  # lexical still ran
    for h in result.hits:
        assert h.dense_rank is not None
        expected = 1 / (60 + h.dense_rank) + (weight / (60 + h.lexical_rank) if h.lexical_rank else 0.0)
        assert h.fused_score == pytest.approx(expected, rel=1e-12)
    # the English chunk that shares the question's common words passes the Korean chunk the
    # dense stage ranked second unless the lexical vote is dropped
    # (at the full lexical weight of 2 it even passes the first)
    expected_order = {0.0: ["a", "b", "c"], 0.25: ["a", "c", "b"], 2.0: ["c", "a", "b"]}[weight] + ["d", "e"]
    assert list(by_name) == [f"{name}.txt" for name in expected_order]


def test_a_query_in_the_script_of_its_top_dense_hits_keeps_the_lexical_weight(script_app: Saem) -> None:
    result = _searcher(script_app, fusion="rrf", lexical_weight=0.5).search("LoRA는 어떤 행렬을 학습하나요?", k=5)
    assert any(h.lexical_rank for h in result.hits)
    for h in result.hits:
        expected = 1 / (60 + h.dense_rank) + (0.5 / (60 + h.lexical_rank) if h.lexical_rank else 0.0)
        assert h.fused_score == pytest.approx(expected, rel=1e-12)
    # no letters, no script: the weight stays too
    digits = _searcher(script_app, fusion="rrf").search("4 4", k=5)
    assert all(h.fused_score > 1 / (60 + h.dense_rank) for h in digits.hits if h.lexical_rank)


def test_relative_fusion_drops_the_lexical_vote_of_a_cross_lingual_query(script_app: Saem) -> None:
    result = _searcher(script_app, cross_lingual_lexical_weight=0.0).search("Which matrices does LoRA train?", k=5)
    assert any(h.lexical_rank for h in result.hits)  # lexical still ran
    assert [h.dense_rank for h in result.hits] == [1, 2, 3, 4, 5]  # but only the dense order counts
    fixed = _searcher(script_app, cross_lingual_lexical_weight=None).search("Which matrices does LoRA train?", k=5)
    assert [h.dense_rank for h in fixed.hits] != [1, 2, 3, 4, 5]


class MixEmbeddings(AngleEmbeddings):
    """Dense order: English, 한국어 1, English, 한국어 2, English, then the rest."""

    MARKERS = ("alpha", "첫째", "beta", "둘째", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


MIX_DOCS = {  # a mostly English store (2 Korean chunks in 10), as a partly translated manual is
    **{
        f"{m}.txt": f"The {m} page describes layers, masks and channels in detail.\n"
        for m in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
    },
    "k1.txt": "첫째 문서: 빨강 채널에서 적목 현상을 고칩니다.\n",
    "k2.txt": "둘째 문서: 레이어 마스크로 부분을 가립니다.\n",
}


def test_a_question_in_the_stores_minority_language_keeps_bm25_when_its_top_dense_hits_favour_it(
    tmp_path: Path,
) -> None:
    app = _ingest(tmp_path, MIX_DOCS, MixEmbeddings())
    # 2 of the top 5 dense hits are Korean: under half, but twice the store's share (2 in 10),
    # so the Korean question is not cross-lingual and BM25 over the Korean pages keeps its weight
    result = _searcher(app, fusion="rrf").search("적목 현상은 어느 채널에서 고치나요?", k=5)
    by_name = {Path(h.source).name: h for h in result.hits}
    assert by_name["k1.txt"].lexical_rank == 1
    for h in result.hits:
        expected = 1 / (60 + h.dense_rank) + (2.0 / (60 + h.lexical_rank) if h.lexical_rank else 0.0)
        assert h.fused_score == pytest.approx(expected, rel=1e-12)
    assert result.hits[0].source.endswith("k1.txt")  # the dense stage alone put an English page first
    cat = Catalogue.open(app.settings.db_path, readonly=True)
    with cat.read() as s:
        assert script_shares(s) == pytest.approx({"LATIN": 0.8, "HANGUL": 0.2})


def test_dominant_script_and_agreement() -> None:
    assert dominant_script("LoRA는 저랭크 행렬을 학습합니다") == "HANGUL"  # 11 Hangul letters, 4 Latin
    assert dominant_script("What does 토크나이저 do?") == "LATIN"
    assert dominant_script("これは漢字です") == "CJK" and dominant_script("Привет, LoRA") == "CYRILLIC"
    assert dominant_script("3.14 + 2 = ?!") is None and dominant_script("") is None
    assert script_agreement("Which matrices?", ["한국어 문장", "English text", "또 한국어"]) == pytest.approx(1 / 3)
    assert script_agreement("42", ["text"]) is None and script_agreement("text", []) is None
    with pytest.raises(ConfigError):
        HybridConfig(cross_lingual_lexical_weight=-0.1)
