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
3. **Filters** — the ``FaissVectorStore`` syntax over ``Hit.metadata`` keys, ANDed: ``{"k": v}``,
   ``{"k": [v, w]}`` / ``{"k": {"$in": [...]}}``, ``{"k": {"$eq": v}}``, ``{"k": {"$glob": "*.md"}}``
   (case-sensitive; ``*`` also crosses ``/``). An unknown key or operator raises ``ValueError``.
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

import fnmatch
import json
import logging
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy import text as sql_text

from saem.errors import ConfigError
from saem.retrieval import coverage, lexical
from saem.retrieval.types import Hit, RetrievalResult
from saem.store.catalogue import Catalogue, Chunk, Source, get_meta, has_catalogue
from saem.store.index import VectorIndex, normalise, open_index

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from saem.retrieval.rerank import Reranker

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

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class HybridConfig:
    """The knobs of one searcher; ``from_settings`` reads them (with these defaults)."""

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
    def from_settings(cls, settings: Any, **overrides: Any) -> HybridConfig:
        """Read each field from ``settings`` (``candidates`` from ``retrieve_candidates``), else default."""
        names = {"candidates": "retrieve_candidates"}
        values = {f.name: getattr(settings, names.get(f.name, f.name), f.default) for f in fields(cls)}
        return cls(**{**values, **overrides})


def clean_query(
    query: str,
    max_chars: int,
    *,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[str, list[str]]:
    """``query`` without ANSI escapes / control characters, cut to ``max_chars``; plus warnings.

    With ``max_tokens`` and ``count_tokens`` (the embedder's limit and counter), a query still
    longer than ``max_tokens`` is cut further to the longest prefix that fits (see
    :func:`fit_tokens`). Raises ``ValueError`` for a non-string or a query that is blank after
    cleaning.
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    warnings: list[str] = []
    text = _CONTROL.sub(" ", _ANSI.sub("", query)).strip()
    if not text:
        raise ValueError("the query is empty: ask a question with at least one word")
    if len(text) > max_chars:
        warnings.append(f"the query was {len(text)} characters; only the first {max_chars} were searched")
        logger.warning(warnings[-1])
        text = text[:max_chars]
    if max_tokens is not None and count_tokens is not None:
        text, more = fit_tokens(text, max_tokens, count_tokens)
        warnings.extend(more)
    return text, warnings


def fit_tokens(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> tuple[str, list[str]]:
    """``text``, or its longest prefix of at most ``max_tokens`` tokens by ``count_tokens``; plus a warning.

    A binary search on the number of characters (about log2(len) counts; one when it fits). At
    least one character is kept, so the query never becomes blank.
    """
    n = count_tokens(text)
    if n <= max_tokens:
        return text, []
    lo, hi = 1, len(text)  # text[:hi] does not fit; text[:lo] is kept even when it does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    cut = text[:lo].rstrip() or text[:lo]
    warning = (
        f"the query was {n} tokens and the embedder reads {max_tokens}; "
        f"only the first {len(cut)} of its {len(text)} characters were searched"
    )
    logger.warning(warning)
    return cut, [warning]


def _fit_embedder(text: str, embedder: Any) -> tuple[str, list[str]]:
    """:func:`fit_tokens` with the embedder's ``max_seq_length`` and ``tokenizer_count``; ``text``
    unchanged when it lacks either, or they fail (a model that cannot load fails in
    ``embed_query`` next, with its own error; a counter that cannot count costs only the cut)."""
    try:
        limit = getattr(embedder, "max_seq_length", None)
        count = getattr(embedder, "tokenizer_count", None)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or not callable(count):
            return text, []
        return fit_tokens(text, limit, count)
    except Exception as err:
        logger.debug("cannot fit the query to the embedder's token limit: %s", err)
        return text, []


def rrf_fuse(
    rankings: Mapping[str, Sequence[int]], weights: Mapping[str, float], rrf_k: int
) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of best-first id lists: ``[(id, score)]``, best first.

    ``score(d) = Σ_s weights[s] / (rrf_k + rank_s(d))`` with 1-based ranks. Ties: better best
    single-stage rank first, then lower id (deterministic).
    """
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for stage, ids in rankings.items():
        w = weights.get(stage, 1.0)
        for rank, cid in enumerate(ids, 1):
            scores[cid] = scores.get(cid, 0.0) + w / (rrf_k + rank)
            best[cid] = min(best.get(cid, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))


def relative_fuse(
    scored: Mapping[str, Sequence[tuple[int, float]]], weights: Mapping[str, float]
) -> list[tuple[int, float]]:
    """Weighted relative score fusion of best-first ``(id, score)`` lists: ``[(id, score)]``, best first.

    Each list's scores are min-max normalised to [0, 1] (a one-item or all-equal list gives 1),
    then ``score(d) = Σ_s weights[s] · norm_s(d)`` (0 where ``d`` is not in list ``s``). Ties:
    better best single-stage rank first, then lower id.
    """
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for stage, hits in scored.items():
        w = weights.get(stage, 1.0)
        if not hits:
            continue
        values = [sc for _, sc in hits]
        hi, lo = max(values), min(values)
        span = hi - lo
        for rank, (cid, sc) in enumerate(hits, 1):
            norm = (sc - lo) / span if span > 0 else 1.0
            scores[cid] = scores.get(cid, 0.0) + w * norm
            best[cid] = min(best.get(cid, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))


_SCRIPT_SAMPLE = 500  # characters of a text looked at to tell its script
_SCRIPT_WINDOW = 5  # top dense hits whose script tells a cross-lingual query
_SHARE_SAMPLE = 2000  # chunks sampled to measure the store's mix of scripts
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "FULLWIDTH": "LATIN"}  # Japanese mixes kana and Han


def dominant_script(text: str) -> str | None:
    """The Unicode script of most letters among the first 500 characters of ``text``.

    The first word of the letters' Unicode names (``"HANGUL"``, ``"LATIN"``, ``"CYRILLIC"``,
    ...; kana count as ``"CJK"``); ties go to the script seen first; None without letters.
    """
    counts = Counter(unicodedata.name(ch, "?").split(" ", 1)[0] for ch in text[:_SCRIPT_SAMPLE] if ch.isalpha())
    merged: Counter[str] = Counter()
    for name, n in counts.items():  # insertion order = first seen, kept by most_common on ties
        merged[_SCRIPT_ALIASES.get(name, name)] += n
    return merged.most_common(1)[0][0] if merged else None


def script_agreement(query: str, texts: Sequence[str]) -> float | None:
    """The share of ``texts`` whose :func:`dominant_script` is the query's; None when the
    query has no letters or ``texts`` is empty (nothing to compare)."""
    script = dominant_script(query)
    if script is None or not texts:
        return None
    return sum(dominant_script(t) == script for t in texts) / len(texts)


def script_shares(s: Any, sample: int = _SHARE_SAMPLE) -> dict[str | None, float]:
    """The share of each :func:`dominant_script` among the store's chunks (an even sample of at
    most ``sample`` of them, by id; one indexed read)."""
    n = int(s.execute(select(func.count()).select_from(Chunk)).scalar_one())
    if n == 0:
        return {}
    step = max(1, n // sample)
    texts = s.execute(
        select(func.substr(Chunk.text, 1, _SCRIPT_SAMPLE)).where(Chunk.id % step == 0).limit(sample)
    ).scalars()
    counts = Counter(dominant_script(t) for t in texts)
    total = sum(counts.values())
    return {script: c / total for script, c in counts.items()} if total else {}


def mmr_select(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Indices of ``k`` items picked by maximal marginal relevance (first = most relevant).

    ``relevance`` in [0, 1] per item; ``vectors`` unit rows. Greedy: each step takes
    ``argmax λ·rel − (1−λ)·max_sim_to_picked`` (ties → lower index).
    """
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    sims = vectors @ vectors.T
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    left = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = lam * relevance - (1.0 - lam) * penalty
        value[~left] = -np.inf
        i = int(np.argmax(value))
        picked.append(i)
        left[i] = False
        max_sim = np.maximum(max_sim, sims[i])
    return picked


@dataclass
class _Cand:
    chunk_id: int
    fused_score: float = 0.0
    fused_rank: int = 0
    dense: tuple[int, float] | None = None
    lexical: tuple[int, float] | None = None
    rerank: tuple[int, float] | None = None
    row: Any = None
    vector: np.ndarray | None = None
    cosine: float = 0.0


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
        """The open catalogue and index; None while nothing is ingested (no db, or a db that
        holds only other modules' tables, such as the chat memory's)."""
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
            model_id = getattr(self.embedder, "model_id", None)
            if stored_model is not None and model_id is not None and stored_model != model_id:
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

        Raises ``ValueError`` (blank query, ``k < 1``), ``ConfigError`` (the embedder differs
        from the one the data dir was built with), ``IndexCorrupt``. A reranker failure is a
        warning, not an error.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        cfg = self.config
        text, warnings = clean_query(query, cfg.max_query_chars)
        result = RetrievalResult(query=text, hits=[], warnings=warnings)
        timings = result.timings
        state = self._state()
        if state is None:
            return _abstain(result, "nothing is ingested in this data dir yet")
        cat, index = state
        text, more = _fit_embedder(text, self.embedder)  # after _state: it may load the model
        if more:
            result.query = text
            result.warnings.extend(more)
        n_cand = max(cfg.candidates, k) * (4 if filters else 1)

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
            dense = index.search(qvec, n_cand)
            timings["dense"] = time.perf_counter() - t0
        with cat.read() as s:
            lex: list[tuple[int, float]] = []
            if cfg.lexical_weight > 0:
                t0 = time.perf_counter()
                lex = lexical.search(s, text, n_cand, max_postings=cfg.lexical_max_postings, stats=self._terms)
                timings["lexical"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            result.missing_terms = coverage.missing_terms(s, text)
            timings["coverage"] = time.perf_counter() - t0
            by_id: dict[int, _Cand] = {}
            for attr, hits in (("dense", dense), ("lexical", lex)):
                for r, (cid, sc) in enumerate(hits, 1):
                    setattr(by_id.setdefault(cid, _Cand(cid)), attr, (r, sc))
            _load_rows(s, list(by_id.values()))
            weights = {"dense": cfg.dense_weight, "lexical": self._lexical_weight(text, dense, by_id)}
            if dense and weights["lexical"] == 0 and cfg.neighbour_weight > 0:  # dense decides alone
                t0 = time.perf_counter()
                dense = _with_neighbours(s, dense, qvec, cfg.neighbour_weight)
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
        if filters:
            cands = [c for c in cands if _matches(c, filters)]
        result.candidates = len(cands)
        if not cands:
            return _abstain(result, "no chunk matched the query" + (" and the filters" if filters else ""))

        cands = self._rerank(text, cands, result)
        if cfg.score_threshold is not None:
            best = max(c.cosine for c in cands[:k])
            if best < cfg.score_threshold:
                return _abstain(result, f"best cosine {best:.3f} is below the threshold {cfg.score_threshold:.3f}")
        if cfg.mmr and len(cands) > 1:
            cands = _mmr(cands, k, cfg.mmr_lambda, cfg.rrf_k)
        result.hits = [_to_hit(c, rank) for rank, c in enumerate(cands[:k], 1)]
        return result

    def _lexical_weight(self, query: str, dense: list[tuple[int, float]], by_id: Mapping[int, _Cand]) -> float:
        """``lexical_weight``, or ``cross_lingual_lexical_weight`` for a cross-lingual query
        (module docstring, stage 2)."""
        cfg = self.config
        if cfg.cross_lingual_lexical_weight is None or cfg.lexical_weight == 0 or not dense:
            return cfg.lexical_weight
        top = [by_id[cid].row for cid, _ in dense[:_SCRIPT_WINDOW]]
        agreement = script_agreement(query, [row.text for row in top if row is not None])
        store_share = self._script_shares.get(dominant_script(query), 0.0)
        if agreement is None or agreement >= 0.5 or agreement > store_share:
            return cfg.lexical_weight
        logger.debug("cross-lingual query (%.0f%% of the top dense hits in its script, %.0f%% of the store): "
                     "lexical weight %s", 100 * agreement, 100 * store_share,
                     cfg.cross_lingual_lexical_weight)  # fmt: skip
        return cfg.cross_lingual_lexical_weight

    def _rerank(self, query: str, cands: list[_Cand], result: RetrievalResult) -> list[_Cand]:
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


def _with_neighbours(
    s: Any, dense: list[tuple[int, float]], qvec: np.ndarray, weight: float
) -> list[tuple[int, float]]:
    """The dense hits re-scored as ``cos(q, c) + weight · mean cos(q, n)`` over the chunks ``n``
    just before and after ``c`` in its source, best first (stage 2 of the module docstring)."""
    ids = [cid for cid, _ in dense]
    place = {int(r.id): (int(r.source_id), int(r.ord)) for r in s.execute(
        select(Chunk.id, Chunk.source_id, Chunk.ord).where(Chunk.id.in_(ids)))}  # fmt: skip
    keys = {(src, o + d) for src, o in place.values() for d in (-1, 1)}
    near: dict[tuple[int, int], float] = {}
    for batch in _batched(sorted(keys), 400):  # SQLite binds at most 32,766 parameters
        # a join on a VALUES list probes the (source_id, ord) index once per key; a row-value IN
        # list scanned the whole table (25 ms at 10k chunks against 0.7 ms). Values are bound.
        rows = ", ".join(f"(:s{i}, :o{i})" for i in range(len(batch)))
        params = {f"{name}{i}": v for i, key in enumerate(batch) for name, v in zip("so", key, strict=True)}
        for r in s.execute(
            sql_text(
                f"WITH wanted(src, o) AS (VALUES {rows}) SELECT c.source_id, c.ord, c.embedding "
                "FROM wanted JOIN chunks AS c ON c.source_id = wanted.src AND c.ord = wanted.o"
            ),
            params,
        ):
            vec = np.frombuffer(r.embedding, dtype="<f4")
            near[(int(r.source_id), int(r.ord))] = float(vec @ qvec) if vec.shape == qvec.shape else 0.0
    scored = []
    for cid, cos in dense:
        src, o = place.get(cid, (-1, -1))
        around = [near[key] for key in ((src, o - 1), (src, o + 1)) if key in near]
        scored.append((cid, cos + weight * (sum(around) / len(around) if around else cos)))
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
    return [scored[i] for i in order]


def _batched(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _load_rows(s: Any, cands: list[_Cand]) -> None:
    """Attach each candidate's chunk row, source path and stored (unit) vector, in one query."""
    if not cands:
        return
    by_id = {c.chunk_id: c for c in cands}
    rows = s.execute(
        select(
            Chunk.id, Chunk.text, Chunk.start, Chunk.end, Chunk.heading_path, Chunk.page, Chunk.embedding, Source.path
        )  # fmt: skip
        .join(Source, Source.id == Chunk.source_id)
        .where(Chunk.id.in_(list(by_id)))
    ).all()
    for row in rows:
        c = by_id[int(row.id)]
        c.row = row
        c.vector = np.frombuffer(row.embedding, dtype="<f4")


def _heading(raw: str) -> str:
    try:
        return " › ".join(json.loads(raw))
    except (ValueError, TypeError):
        return ""


def _final_score(c: _Cand) -> float:
    return c.rerank[1] if c.rerank is not None else c.fused_score


def _to_hit(c: _Cand, rank: int) -> Hit:
    r = c.row
    return Hit(
        chunk_id=c.chunk_id, text=r.text, source=r.path, start=r.start, end=r.end, heading=_heading(r.heading_path),
        page=r.page, rank=rank, score=_final_score(c), fused_score=c.fused_score, fused_rank=c.fused_rank,
        cosine=c.cosine,
        dense_rank=c.dense[0] if c.dense else None, dense_score=c.dense[1] if c.dense else None,
        lexical_rank=c.lexical[0] if c.lexical else None, lexical_score=c.lexical[1] if c.lexical else None,
        rerank_rank=c.rerank[0] if c.rerank else None, rerank_score=c.rerank[1] if c.rerank else None,
    )  # fmt: skip


def _matches(c: _Cand, filters: Mapping[str, Any]) -> bool:
    """AND over keys; per key ``v`` (equal), a list (``$in``) or ``{"$eq"|"$in"|"$glob": ...}``."""
    meta = _to_hit(c, 0).metadata()
    for key, spec in filters.items():
        if key not in meta:
            raise ValueError(f"unknown filter {key!r}; filter on one of {sorted(meta)}")
        value = meta[key]
        if isinstance(spec, list | tuple | set | frozenset):
            spec = {"$in": list(spec)}
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        for op, arg in ops.items():
            if op == "$eq":
                ok = value == arg
            elif op == "$in":
                ok = value in list(arg)
            elif op == "$glob":
                ok = value is not None and fnmatch.fnmatchcase(str(value), str(arg))
            else:
                raise ValueError(f"unknown filter operator {op!r} on {key!r} (use $eq, $in or $glob)")
            if not ok:
                return False
    return True


def _mmr(cands: list[_Cand], k: int, lam: float, rrf_k: int) -> list[_Cand]:
    # relevance from the position in the final order, on the RRF scale: 1 for the first,
    # (c+1)/(c+r) for rank r — independent of the reranker's score units
    c = max(rrf_k, 1)
    relevance = np.asarray([(c + 1) / (c + r) for r in range(1, len(cands) + 1)], dtype=np.float64)
    dims = {x.vector.shape for x in cands if x.vector is not None}
    if len(dims) != 1 or any(x.vector is None for x in cands):
        return cands
    vectors = np.stack([x.vector for x in cands if x.vector is not None]).astype(np.float64)
    picked = mmr_select(relevance, vectors, k, lam)
    chosen = set(picked)
    return [cands[i] for i in picked] + [x for i, x in enumerate(cands) if i not in chosen]
