"""Fusion of the dense and lexical candidate lists, and maximal marginal relevance.

    fused = relative_fuse({"dense": [(3, 0.81), (7, 0.64)], "lexical": [(7, 11.2)]}, {"dense": 1.0, "lexical": 2.0})
    picked = mmr_select(relevance, unit_vectors, k=5, lam=0.7)

Pure functions over ids and scores (see :mod:`saem.retrieval.hybrid`, stages 2 and 7, for why
each is used); deterministic, ties broken by rank then id; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["mmr_select", "relative_fuse", "rrf_fuse"]


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
