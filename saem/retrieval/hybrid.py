"""Hybrid retrieval: dense (FAISS) + lexical (FTS5/BM25) → weighted score fusion → rerank → threshold → MMR.

    searcher = HybridSearcher(data_dir, embedder, reranker=None, config=HybridConfig())
    result = searcher.search("LoRA는 무엇을 학습하나요?", k=5, filters={"source": {"$glob": "*.md"}})
    result.abstained, result.reason, [h.chunk_id for h in result.hits]

Stages, each recorded on every :class:`~saem.retrieval.types.Hit`:

1. **Candidates** — the ``candidates`` best chunks by cosine (FAISS) and by BM25 (FTS5). A
   stage whose weight is 0 is skipped (so ``lexical_weight=0`` is dense-only search). In a
   large store BM25 finds chunks by the query's rarest terms (document frequencies adding up
   to at most ``lexical_max_postings``) and scores them with all its terms but the ones in
   over half the chunks (see :mod:`saem.retrieval.lexical`; None: a plain ``OR`` of all).
2. **Fusion** — ``fusion="relative"`` (default): weighted relative score fusion. Each stage's
   scores (cosine, BM25) are min-max normalised over its candidate list to [0, 1], then
   ``score(d) = Σ_s w_s · norm_s(d)`` (0 for a stage that did not return ``d``). Unlike rank
   fusion it keeps *how much* better a stage's first hit is: a chunk BM25 scores far above the
   rest (an exact name, number or rare phrase) is not pulled down to the level of the dense
   stage's third guess, and a near tie in one stage lets the other decide. Measured on both
   QA sets (``bench/retrieval.py``) it beats rank fusion at every weight tried, with equal
   weights. ``fusion="rrf"``: weighted reciprocal rank fusion,
   ``score(d) = Σ_s w_s / (rrf_k + rank_s(d))`` (ranks 1-based). Either way, ties go to the
   better single-stage rank, then the lower chunk id.
   *Cross-lingual queries*: a query is taken as cross-lingual when its script
   (:func:`dominant_script`: the Unicode script of most letters) is rarer among the top 5 dense
   hits than among the store's chunks, and held by fewer than half of them; it is then fused
   with ``cross_lingual_lexical_weight`` (default 0.5) instead of ``lexical_weight`` (default
   2.0). Why: BM25 matches surface forms, so for an English question whose nearest chunks are
   Korean it can match only the names and numbers those chunks borrow, and its list is led by
   English chunks sharing the question's common words. A multilingual embedder places the
   question near chunks of either language, so its top hits say which language the answer is
   in — but only against the store's own mix: in a manual whose pages are 90 % English, a
   Korean question's top dense hits are mostly English even when a Korean page answers it, and
   switching BM25 off there halved Korean recall. So the top hits must favour the other script
   *more than the store does*. (The store's mix is counted once per store version on a sample
   of up to 2,000 chunks.) Queries without letters, dense-only and lexical-only search, and
   every query when the setting is None keep ``lexical_weight``. Languages sharing a script
   (English and French) are not told apart. The two weights were chosen by 5-fold
   cross-validation over the four development sets (``bench/fusion_cv.py``).
   *Neighbours*: when dense search decides alone (lexical weight 0 for the query: dense-only
   search, or ``cross_lingual_lexical_weight = 0`` on a cross-lingual query), each dense candidate is scored as
   ``cos(q, c) + neighbour_weight · mean cos(q, n)`` over the chunks just before and after it in
   its source (two indexed SQL reads for the 50 candidates). A passage whose surroundings are on
   the question's topic beats a lone look-alike sentence elsewhere, as it would with larger
   chunks, but the model still gets the small chunk. Measured (``bench/retrieval.py``, 0.25):
   dense-only MRR@10 0.52 → 0.61 on the seeds set, cross-lingual 0.83 → 0.88 and 0.87 → 0.90;
   with lexical search voting it lowered Korean MRR, so it is not used there. ``Hit.dense_score``
   is this score; ``Hit.cosine`` stays the chunk's own.
3. **Filters** — applied *before* both searches (:mod:`saem.store.filters`, the
   ``FaissVectorStore`` contract) over the chunk fields of ``Hit.metadata``: ``chunk_id``,
   ``source``, ``start``, ``end``, ``heading``, ``page``. ANDed: ``{"k": v}``,
   ``{"k": {"$eq": v}}``, ``{"k": {"$in": [...]}}``, ``{"k": {"$glob": "*.md"}}`` (case-sensitive;
   ``*`` also crosses ``/``). The matching chunk ids are read in SQL; FAISS then scans only them
   (an ``IDSelectorBatch``) and BM25 ranks only them (so ``k`` hits come back whenever ``k``
   chunks match, however far below the unfiltered top they rank). An unknown key, an unknown
   operator or a value that is not a JSON scalar raises ``ValueError`` before any I/O.
4. **Rerank** (optional) — the top ``rerank_candidates`` fused hits, passages cut to
   ``rerank_max_chars``, scored in one call; they move ahead of the rest in reranker order.
   If the reranker raises, the fused order is kept and ``result.warnings`` says why.
5. **Coverage** — ``result.missing_terms``: name-like terms of the query that no chunk
   contains (:mod:`saem.retrieval.coverage`). Informational: the hits are kept; the chain
   abstains on them (setting ``abstain_on_missing_terms``).
6. **Threshold** — when the best cosine (query vs stored chunk embedding) among the top ``k``
   is below ``score_threshold``, the result is empty with ``abstained=True`` and a reason.
7. **MMR** (optional) — the ``k`` hits are picked greedily by
   ``λ·relevance − (1−λ)·max cosine to the hits already picked``, relevance taken from the
   position r in the final order as ``(rrf_k+1)/(rrf_k+r)`` (so any reranker's scale works).

Queries: ANSI escapes and control characters are removed; a query longer than
``max_query_chars`` is cut (with a warning); an empty or blank query raises ``ValueError``.
When the embedder says how many tokens it reads (``max_seq_length``) and can count them
(``tokenizer_count``), as saem's sentence-transformers embedders do, a query the embedder would
not read whole is cut further, to the longest prefix that fits (with a warning), so every stage
searches what the dense stage saw; ``result.query`` is the text searched. An embedder without a
limit (the packaged USE) or without a counter keeps ``max_query_chars`` alone. (e5-small reads
longer texts in 512-token windows instead of truncating them; its queries are cut all the same.)
Anything else — punctuation, emoji, FTS5 syntax such as ``"``, ``*``, ``NEAR``, ``OR 1=1`` — is
searched as text and never raises (lexical search quotes every token).

Thread-safety: ``search`` may be called from several threads. The FAISS index is loaded once
and reloaded when the catalogue's ``generation`` changes (after an ingest); the lexical term
counts (:class:`~saem.retrieval.lexical.TermStats`) start over then too. Read-only: never
writes the data dir. A ``saem.db`` without the ingestion catalogue (made by ``saem.memory``
before any ingest) counts as nothing ingested yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from saem.errors import ConfigError
from saem.models.embedders import embedder_id
from saem.retrieval import coverage, lexical
from saem.retrieval._candidates import (
    Cand,
    allowed_ids,
    compile_chunk_filter,
    dense_search,
    load_rows,
    mmr,
    to_hit,
    with_neighbours,
)
from saem.retrieval._fusion import mmr_select, relative_fuse, rrf_fuse
from saem.retrieval._query import clean_query, fit_embedder, fit_tokens
from saem.retrieval._script import SCRIPT_WINDOW, cross_lingual, dominant_script, script_agreement, script_shares
from saem.retrieval.types import RetrievalResult
from saem.store.catalogue import Catalogue, get_meta, has_catalogue
from saem.store.index import VectorIndex, normalise, open_index

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from saem.retrieval.rerank import Reranker
    from saem.settings import Settings

__all__ = [
    "HybridConfig",
    "HybridSearcher",
    "rrf_fuse",
    "relative_fuse",
    "mmr_select",
    "clean_query",
    "fit_tokens",
    "dominant_script",
    "script_agreement",
    "script_shares",
]

logger = logging.getLogger("saem.retrieval")

_FUSIONS = frozenset({"rrf", "relative"})
_TERM_STATS_MAX = 100_000  # terms counted per generation before the counts start over


@dataclass(frozen=True)
class HybridConfig:
    """The knobs of one searcher (these defaults are the settings' defaults); see ``from_settings``."""

    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 2.0
    candidates: int = 50
    rerank_candidates: int = 20
    rerank_max_chars: int = 1000
    score_threshold: float | None = None
    mmr: bool = False
    mmr_lambda: float = 0.7
    max_query_chars: int = 2000
    lexical_max_postings: int | None = lexical.MAX_POSTINGS
    cross_lingual_lexical_weight: float | None = 0.5  # None: lexical_weight for every query
    neighbour_weight: float = 0.25  # dense-only queries: share of the neighbouring chunks' cosine in a score
    fusion: str = "relative"  # "relative" (min-max normalised scores) or "rrf" (ranks)

    def __post_init__(self) -> None:
        if self.rrf_k < 0 or self.candidates < 1 or self.rerank_candidates < 0 or self.max_query_chars < 1:
            raise ConfigError("rrf_k, candidates, rerank_candidates and max_query_chars must be positive")
        if self.neighbour_weight < 0:
            raise ConfigError("neighbour_weight must be >= 0", key="neighbour_weight")
        if self.cross_lingual_lexical_weight is not None and self.cross_lingual_lexical_weight < 0:
            raise ConfigError("cross_lingual_lexical_weight must be >= 0 (or None)", key="cross_lingual_lexical_weight")
        if self.lexical_max_postings is not None and self.lexical_max_postings < 1:
            raise ConfigError("lexical_max_postings must be positive (or None)", key="lexical_max_postings")
        if self.dense_weight < 0 or self.lexical_weight < 0 or self.dense_weight + self.lexical_weight == 0:
            raise ConfigError("dense_weight and lexical_weight must be >= 0 and not both 0", key="dense_weight")
        if self.fusion not in _FUSIONS:
            raise ConfigError(f"fusion must be one of {sorted(_FUSIONS)}, got {self.fusion!r}", key="fusion")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError("mmr_lambda must be in [0, 1]", key="mmr_lambda")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> HybridConfig:
        """The config ``settings`` describe (``candidates`` is ``retrieve_candidates``), with
        ``overrides`` replacing fields. ``lexical_max_postings`` is no setting and keeps its default."""
        values: dict[str, Any] = {
            "rrf_k": settings.rrf_k,
            "dense_weight": settings.dense_weight,
            "lexical_weight": settings.lexical_weight,
            "candidates": settings.retrieve_candidates,
            "rerank_candidates": settings.rerank_candidates,
            "rerank_max_chars": settings.rerank_max_chars,
            "score_threshold": settings.score_threshold,
            "mmr": settings.mmr,
            "mmr_lambda": settings.mmr_lambda,
            "max_query_chars": settings.max_query_chars,
            "cross_lingual_lexical_weight": settings.cross_lingual_lexical_weight,
            "neighbour_weight": settings.neighbour_weight,
            "fusion": settings.fusion,
        }
        return cls(**{**values, **overrides})


class HybridSearcher:
    """Hybrid search over one data dir. See the module docstring for stages and contracts.

    ``embedder`` must be the one the data dir was ingested with (checked: ``ConfigError``
    otherwise). ``reranker`` is any :class:`~saem.retrieval.rerank.Reranker` or None.
    Construction is cheap; the catalogue and the index open on the first search.
    """

    def __init__(
        self,
        data_dir: str | Path,
        embedder: Embeddings,
        *,
        reranker: Reranker | None = None,
        config: HybridConfig | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.embedder = embedder
        self.reranker = reranker
        self.config = config or HybridConfig()
        self._lock = threading.Lock()
        self._cat: Catalogue | None = None
        self._index: VectorIndex | None = None
        self._generation: str | None = None
        self._terms = lexical.TermStats()  # for the current generation
        self._script_shares: dict[str | None, float] = {}  # for the current generation

    def with_config(self, **changes: Any) -> HybridSearcher:
        """A searcher sharing this one's embedder and reranker with some config fields changed."""
        other = HybridSearcher(self.data_dir, self.embedder, reranker=changes.pop("reranker", self.reranker),
                               config=replace(self.config, **changes))  # fmt: skip
        other._cat = self._cat
        return other

    def _state(self) -> tuple[Catalogue, VectorIndex | None] | None:
        """The open catalogue and index; None while nothing is ingested (no db, a db that holds
        only other modules' tables, such as the chat memory's, or empty catalogue tables)."""
        db = self.data_dir / "saem.db"
        if not db.is_file():
            return None
        with self._lock:
            if self._cat is None:
                self._cat = Catalogue.open(db, readonly=True)
            with self._cat.read() as s:
                if self._generation is None and not has_catalogue(s):  # tables, once there, stay
                    return None
                generation = get_meta(s, "generation")
                stored_model = get_meta(s, "embed_model")
            if stored_model is None and self._generation is None:  # the tables, but nothing embedded yet
                return None
            model_id = embedder_id(self.embedder)
            if stored_model is not None and stored_model != model_id:
                raise ConfigError(
                    f"{self.data_dir} was embedded with {stored_model}, but the embedder is {model_id}",
                    key="embed_model",
                    hint=f"set embed_model = {stored_model!r}, or re-ingest with the new embedder",
                )
            if generation != self._generation or self._index is None:
                self._index = open_index(self.data_dir, self._cat, persist=False)
                self._generation = generation
                self._terms = lexical.TermStats()
                with self._cat.read() as s:
                    self._script_shares = script_shares(s)
            elif len(self._terms.df) > _TERM_STATS_MAX:
                self._terms = lexical.TermStats()
            return self._cat, self._index

    def search(self, query: str, k: int = 5, *, filters: Mapping[str, Any] | None = None) -> RetrievalResult:
        """The ``k`` best chunks for ``query``; empty with ``abstained`` when nothing is relevant.

        ``filters`` (module docstring, stage 3) select the chunks searched, so ``k`` hits come
        back whenever ``k`` chunks match. Raises ``ValueError`` (blank query, ``k < 1``, a bad
        filter), ``ConfigError`` (the embedder differs from the one the data dir was built
        with), ``IndexCorrupt``. A reranker failure is a warning, not an error.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        where = compile_chunk_filter(filters) if filters else None  # a bad filter fails before any I/O
        cfg = self.config
        text, warnings = clean_query(query, cfg.max_query_chars)
        result = RetrievalResult(query=text, hits=[], warnings=warnings)
        timings = result.timings
        state = self._state()
        if state is None:
            return _abstain(result, "nothing is ingested in this data dir yet")
        cat, index = state
        text, more = fit_embedder(text, self.embedder)  # after _state: it may load the model
        if more:
            result.query = text
            result.warnings.extend(more)
        n_cand = max(cfg.candidates, k)
        allowed = None  # the chunk ids the filters select; None: all
        if where is not None:
            t0 = time.perf_counter()
            with cat.read() as s:
                allowed = allowed_ids(s, where)
            timings["filter"] = time.perf_counter() - t0
            if allowed.size == 0:
                return _abstain(result, "no chunk matched the filters")

        t0 = time.perf_counter()
        qvec = normalise(np.asarray(self.embedder.embed_query(text), dtype=np.float32))[0]
        timings["embed"] = time.perf_counter() - t0
        if index is not None and index.dim != qvec.shape[0]:
            raise ConfigError(
                f"the data dir's vectors have {index.dim} dims, the embedder gives {qvec.shape[0]}",
                key="embed_model",
                hint="use the embedder the data dir was ingested with, or re-ingest",
            )
        dense: list[tuple[int, float]] = []
        if cfg.dense_weight > 0 and index is not None:
            t0 = time.perf_counter()
            dense = dense_search(index, qvec, n_cand, allowed)
            timings["dense"] = time.perf_counter() - t0
        with cat.read() as s:
            lex: list[tuple[int, float]] = []
            if cfg.lexical_weight > 0:
                t0 = time.perf_counter()
                lex = lexical.search(
                    s, text, n_cand, max_postings=cfg.lexical_max_postings, stats=self._terms, within=allowed
                )
                timings["lexical"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            result.missing_terms = coverage.missing_terms(s, text)
            timings["coverage"] = time.perf_counter() - t0
            by_id: dict[int, Cand] = {}
            for attr, hits in (("dense", dense), ("lexical", lex)):
                for r, (cid, sc) in enumerate(hits, 1):
                    setattr(by_id.setdefault(cid, Cand(cid)), attr, (r, sc))
            load_rows(s, list(by_id.values()))
            weights = {"dense": cfg.dense_weight, "lexical": self._lexical_weight(text, dense, by_id)}
            if dense and weights["lexical"] == 0 and cfg.neighbour_weight > 0:  # dense decides alone
                t0 = time.perf_counter()
                dense = with_neighbours(s, dense, qvec, cfg.neighbour_weight)
                for r, (cid, sc) in enumerate(dense, 1):
                    by_id[cid].dense = (r, sc)
                timings["dense"] += time.perf_counter() - t0
        if cfg.fusion == "relative":
            fused = relative_fuse({"dense": dense, "lexical": lex}, weights)
        else:
            fused = rrf_fuse({"dense": [c for c, _ in dense], "lexical": [c for c, _ in lex]}, weights, cfg.rrf_k)
        cands = []
        for rank, (cid, score) in enumerate(fused, 1):
            c = by_id[cid]
            c.fused_score, c.fused_rank = score, rank
            if c.row is not None:
                cands.append(c)
        for c in cands:
            assert c.vector is not None
            c.cosine = float(c.vector @ qvec) if c.vector.shape == qvec.shape else 0.0
        result.candidates = len(cands)
        if not cands:
            return _abstain(result, "no chunk matched the query" + (" and the filters" if where is not None else ""))

        cands = self._rerank(text, cands, result)
        if cfg.score_threshold is not None:
            best = max(c.cosine for c in cands[:k])
            if best < cfg.score_threshold:
                return _abstain(result, f"best cosine {best:.3f} is below the threshold {cfg.score_threshold:.3f}")
        if cfg.mmr and len(cands) > 1:
            cands = mmr(cands, k, cfg.mmr_lambda, cfg.rrf_k)
        result.hits = [to_hit(c, rank) for rank, c in enumerate(cands[:k], 1)]
        return result

    def _lexical_weight(self, query: str, dense: list[tuple[int, float]], by_id: Mapping[int, Cand]) -> float:
        """``lexical_weight``, or ``cross_lingual_lexical_weight`` for a cross-lingual query
        (module docstring, stage 2)."""
        cfg = self.config
        if cfg.cross_lingual_lexical_weight is None or cfg.lexical_weight == 0 or not dense:
            return cfg.lexical_weight
        top = [by_id[cid].row for cid, _ in dense[:SCRIPT_WINDOW]]
        gate = cross_lingual(query, [row.text for row in top if row is not None], self._script_shares)
        if gate is None:
            return cfg.lexical_weight
        agreement, store_share = gate
        logger.debug("cross-lingual query (%.0f%% of the top dense hits in its script, %.0f%% of the store): "
                     "lexical weight %s", 100 * agreement, 100 * store_share,
                     cfg.cross_lingual_lexical_weight)  # fmt: skip
        return cfg.cross_lingual_lexical_weight

    def _rerank(self, query: str, cands: list[Cand], result: RetrievalResult) -> list[Cand]:
        cfg = self.config
        if self.reranker is None or cfg.rerank_candidates == 0:
            return cands
        head, tail = cands[: cfg.rerank_candidates], cands[cfg.rerank_candidates :]
        name = getattr(self.reranker, "model_id", type(self.reranker).__name__)
        t0 = time.perf_counter()
        try:
            scores = self.reranker.rerank(query, [c.row.text[: cfg.rerank_max_chars] for c in head])
            if len(scores) != len(head) or not all(np.isfinite(scores)):
                raise ValueError(f"returned {len(scores)} scores for {len(head)} passages, or a NaN")
        except Exception as err:  # any reranker failure degrades to the fused order
            msg = f"reranker {name} failed ({type(err).__name__}: {err}); kept the fused order"
            logger.warning(msg)
            result.warnings.append(msg)
            return cands
        finally:
            result.timings["rerank"] = time.perf_counter() - t0
        result.reranker = name
        order = sorted(range(len(head)), key=lambda i: (-scores[i], head[i].fused_rank))
        for rank, i in enumerate(order, 1):
            head[i].rerank = (rank, float(scores[i]))
        return [head[i] for i in order] + tail


def _abstain(result: RetrievalResult, reason: str) -> RetrievalResult:
    result.hits, result.abstained, result.reason = [], True, reason
    return result
