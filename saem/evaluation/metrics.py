"""Answer, abstention, citation and retrieval metrics, and paired significance tests.

Normalisation (every answer metric): Unicode NFKC, lower case, thousands separators dropped
between digits (``50,257`` → ``50257``), punctuation (Unicode category P*) → space, the English
articles ``a an the`` dropped, whitespace collapsed. Symbols (``▁ √ %``) are kept.

Tokens (token F1, ROUGE-L): the normalised text split on spaces, then every word split into runs
of Hangul and non-Hangul; a Hangul run becomes its syllables (character level, as KorQuAD's F1),
a non-Hangul run stays one token. ``"GPT-2는 50,257개"`` → ``gpt 2 는 50257 개``. Character
level needs no morphological analyser, so scores are deterministic across kiwipiepy versions;
particles count as (cheap) tokens, so ``서울은`` vs ``서울`` scores F1 0.8, not 1.0.

With several gold answers, each answer metric takes the best over them.

Retrieval uses the shared relevance rule (``shared/eval/README.md``): after whitespace
normalisation a chunk is relevant when it contains an evidence span, or a contiguous piece of
at least 60 % of one.

All functions are pure and thread-safe. Paired tests take per-item scores in the same item order.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

import numpy as np

__all__ = [
    "AbstentionScores",
    "AnswerScores",
    "BootstrapResult",
    "GroundingScores",
    "McNemarResult",
    "percentile",
    "RetrievalScores",
    "abstention_scores",
    "answer_scores",
    "citation_grounding",
    "contains_answer",
    "exact_match",
    "is_abstention",
    "is_relevant",
    "mcnemar_exact",
    "mean_retrieval_scores",
    "normalize_answer",
    "paired_bootstrap",
    "retrieval_scores",
    "rouge_l",
    "token_f1",
    "tokens",
]

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPACE = re.compile(r"\s+")
_RUN = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+|[^\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


def normalize_answer(text: str) -> str:
    """The normalised form every answer metric compares (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _THOUSANDS.sub("", text)
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def tokens(text: str) -> list[str]:
    """Metric tokens: normalised words, Hangul runs split into syllables."""
    out: list[str] = []
    for word in normalize_answer(text).split():
        for run in _RUN.findall(word):
            if _HANGUL.match(run):
                out.extend(run)  # one token per syllable
            else:
                out.append(run)
    return out


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def _f1(common: int, n_pred: int, n_gold: int) -> float:
    if n_pred == 0 or n_gold == 0:
        return float(n_pred == n_gold)
    if common == 0:
        return 0.0
    precision, recall = common / n_pred, common / n_gold
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best bag-of-tokens F1 against the gold answers (0.0 when there are none)."""
    pred = tokens(prediction)
    best = 0.0
    for answer in answers:
        gold = tokens(answer)
        common = sum((Counter(pred) & Counter(gold)).values())
        best = max(best, _f1(common, len(pred), len(gold)))
    return best


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, answers: Sequence[str]) -> float:
    """Best ROUGE-L F1 (longest common subsequence of metric tokens, beta = 1)."""
    pred = tokens(prediction)
    return max((_f1(_lcs(pred, tokens(a)), len(pred), len(tokens(a))) for a in answers), default=0.0)


def contains_answer(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a normalised gold answer occurs in the normalised prediction.

    A match may not cut a Latin letter/digit run (``5`` is not in ``15``), but Hangul may follow
    or precede it (``서울`` is in ``서울은``), since Korean attaches particles to words.
    """
    pred = normalize_answer(prediction)
    for answer in answers:
        gold = normalize_answer(answer)
        if gold and re.search(rf"(?<![0-9a-z]){re.escape(gold)}(?![0-9a-z])", pred):
            return 1.0
    return 0.0


@dataclass(frozen=True)
class AnswerScores:
    exact_match: float
    f1: float
    contains: float
    rouge_l: float


def answer_scores(prediction: str, answers: Sequence[str]) -> AnswerScores:
    """All four answer metrics for one prediction."""
    return AnswerScores(
        exact_match(prediction, answers),
        token_f1(prediction, answers),
        contains_answer(prediction, answers),
        rouge_l(prediction, answers),
    )


# --- abstention ------------------------------------------------------------------------------

_ABSTAIN = re.compile(
    r"i (?:do not|don't|cannot|can't) (?:know|find|answer|say)|i'm not sure|i am not sure"
    r"|(?:not|never) (?:mentioned|stated|specified|provided|given|found|included|contained)"
    r"|(?:does|do) not (?:contain|mention|say|include|provide|specify)"
    r"|no (?:information|mention|answer)|unable to (?:answer|find|determine)|cannot be (?:answered|determined)"
    r"|모르(?:겠|ㅂ니다|는)|알 수 없|찾을 수 없|답할 수 없|답변할 수 없|확인할 수 없"
    r"|나와 있지 않|나와있지 않|언급(?:되어 있지 않|되지 않|이 없)|포함되어 있지 않|(?:정보|내용|답)(?:이|가|은|는)? 없"
    r"|문서에(?:는)? 없"
)


def is_abstention(text: str) -> bool:
    """Whether an answer declines ("I don't know", "문서에 없습니다", ...), English or Korean."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    return _ABSTAIN.search(_SPACE.sub(" ", text)) is not None


@dataclass(frozen=True)
class AbstentionScores:
    """``accuracy``: abstained exactly on the unanswerable items. ``precision``/``recall`` treat
    abstaining as the positive class (None when undefined: no abstentions / no unanswerable items)."""

    accuracy: float
    precision: float | None
    recall: float | None
    abstained: int
    unanswerable: int
    n: int


def abstention_scores(predictions: Sequence[str], answerable: Sequence[bool]) -> AbstentionScores:
    """Score abstention against which items are answerable (same order). Raises on length mismatch."""
    if len(predictions) != len(answerable):
        raise ValueError("predictions and answerable differ in length")
    if not predictions:
        raise ValueError("no predictions")
    abstained = [is_abstention(p) for p in predictions]
    unanswerable = [not a for a in answerable]
    hits = sum(x and y for x, y in zip(abstained, unanswerable, strict=True))
    correct = sum(x == y for x, y in zip(abstained, unanswerable, strict=True))
    n_abs, n_un = sum(abstained), sum(unanswerable)
    return AbstentionScores(
        accuracy=correct / len(predictions),
        precision=hits / n_abs if n_abs else None,
        recall=hits / n_un if n_un else None,
        abstained=n_abs,
        unanswerable=n_un,
        n=len(predictions),
    )


# --- relevance, citations, retrieval ---------------------------------------------------------


def _ws(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def is_relevant(chunk: str, evidence: Sequence[str], min_frac: float = 0.6) -> bool:
    """The shared relevance rule: a whole evidence span in the chunk, or ≥ ``min_frac`` of one
    as a contiguous piece (whitespace runs collapsed on both sides). No evidence → False."""
    text = _ws(chunk)
    for span in map(_ws, evidence):
        if not span:
            continue
        if span in text:
            return True
        match = SequenceMatcher(None, span, text, autojunk=False).find_longest_match(0, len(span), 0, len(text))
        if match.size >= min_frac * len(span):
            return True
    return False


@dataclass(frozen=True)
class GroundingScores:
    """Over answerable items: ``rate`` = answers with ≥ 1 relevant citation / answers citing
    anything; ``cited_rate`` = answers citing anything / answerable items; ``precision`` =
    relevant citations / all citations. None when the denominator is 0."""

    rate: float | None
    cited_rate: float | None
    precision: float | None
    answerable: int
    cited: int
    grounded: int


def citation_grounding(citations: Sequence[Sequence[str]], items: Sequence[Mapping[str, Any]]) -> GroundingScores:
    """``citations[i]`` = texts of the chunks answer i cites; ``items[i]`` = its QA item (``evidence``).

    Items without evidence (unanswerable) are skipped.
    """
    if len(citations) != len(items):
        raise ValueError("citations and items differ in length")
    answerable = cited = grounded = n_citations = relevant_citations = 0
    for cited_texts, item in zip(citations, items, strict=True):
        evidence = list(item.get("evidence") or [])
        if not evidence:
            continue
        answerable += 1
        flags = [is_relevant(text, evidence) for text in cited_texts]
        n_citations += len(flags)
        relevant_citations += sum(flags)
        cited += bool(flags)
        grounded += any(flags)
    return GroundingScores(
        rate=grounded / cited if cited else None,
        cited_rate=cited / answerable if answerable else None,
        precision=relevant_citations / n_citations if n_citations else None,
        answerable=answerable,
        cited=cited,
        grounded=grounded,
    )


@dataclass(frozen=True)
class RetrievalScores:
    """``recall``: share of evidence spans found in the top k; ``hit``: any relevant chunk in the
    top k; ``mrr``: 1 / rank of the first relevant chunk (0 beyond k); ``ndcg``: binary gains."""

    recall: float
    hit: float
    mrr: float
    ndcg: float


def retrieval_scores(
    ranked: Sequence[str], evidence: Sequence[str], k: int = 10, n_relevant: int | None = None
) -> RetrievalScores:
    """Scores of one ranked list of chunk texts (best first) against an item's evidence spans.

    nDCG's ideal list holds ``max(n_relevant, relevant chunks retrieved)`` relevant chunks
    (capped at k); ``n_relevant`` defaults to the number of evidence spans — pass the count of
    relevant chunks in the whole corpus when known. Raises ``ValueError`` for no evidence
    (unanswerable items have no retrieval score) or ``k < 1``.
    """
    spans = [s for s in evidence if _ws(s)]
    if not spans:
        raise ValueError("an item without evidence has no retrieval score")
    if k < 1:
        raise ValueError("k must be at least 1")
    top = list(ranked[:k])
    flags = [is_relevant(chunk, spans) for chunk in top]
    found = sum(any(is_relevant(chunk, [span]) for chunk in top) for span in spans)
    dcg = sum(1.0 / math.log2(i + 2) for i, flag in enumerate(flags) if flag)
    n_ideal = min(k, max(len(spans) if n_relevant is None else n_relevant, sum(flags)))
    ideal = sum(1.0 / math.log2(i + 2) for i in range(n_ideal))
    return RetrievalScores(
        recall=found / len(spans),
        hit=float(any(flags)),
        mrr=next((1.0 / (i + 1) for i, flag in enumerate(flags) if flag), 0.0),
        ndcg=dcg / ideal if ideal else 0.0,
    )


def mean_retrieval_scores(
    rankings: Sequence[Sequence[str]], items: Sequence[Mapping[str, Any]], k: int = 10
) -> tuple[RetrievalScores, int]:
    """Mean scores over the answerable items, and how many there were (unanswerable skipped)."""
    if len(rankings) != len(items):
        raise ValueError("rankings and items differ in length")
    rows = [
        retrieval_scores(ranked, item["evidence"], k)
        for ranked, item in zip(rankings, items, strict=True)
        if any(_ws(s) for s in item.get("evidence") or [])
    ]
    if not rows:
        return RetrievalScores(0.0, 0.0, 0.0, 0.0), 0
    n = len(rows)
    return (
        RetrievalScores(
            recall=sum(r.recall for r in rows) / n,
            hit=sum(r.hit for r in rows) / n,
            mrr=sum(r.mrr for r in rows) / n,
            ndcg=sum(r.ndcg for r in rows) / n,
        ),
        n,
    )


# --- paired tests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapResult:
    """Mean of ``a - b`` with a percentile CI; ``p_value`` = two-sided bootstrap estimate that the
    mean difference is 0 (2 × share of resampled means on the far side of 0, at most 1)."""

    mean_diff: float
    low: float
    high: float
    confidence: float
    p_value: float
    n: int
    resamples: int


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100): the smallest value with at least
    ``p`` % of the values at or below it. ``percentile([1, 2, 3, 4], 50) == 2``. Raises
    ``ValueError`` on no values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> BootstrapResult:
    """Paired bootstrap of the mean difference between two arms scored on the same items.

    Resamples items with replacement (numpy ``default_rng(seed)``): the same seed and inputs give
    the same interval. Raises ``ValueError`` on empty or unequal-length inputs.
    """
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(a) != len(b) or x.size == 0:
        raise ValueError("a and b must be non-empty and of equal length")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    block = max(1, 2_000_000 // x.size)  # bound memory: ~16 MB of indices at a time
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    observed = float(x.mean())
    far = np.mean(means <= 0.0) if observed > 0 else np.mean(means >= 0.0)
    p_value = 1.0 if observed == 0 else min(1.0, 2.0 * float(far))
    return BootstrapResult(observed, float(low), float(high), confidence, p_value, int(x.size), resamples)


@dataclass(frozen=True)
class McNemarResult:
    """``only_a``: items a got right and b wrong; ``only_b``: the reverse. Exact two-sided p."""

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """McNemar's exact test on paired binary outcomes (binomial on the discordant pairs, p = 0.5)."""
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError("a and b differ in length")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a, b, strict=True))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a, b, strict=True))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(min(only_a, only_b), n, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(only_a, only_b, min(1.0, p))
