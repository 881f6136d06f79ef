"""Answer, abstention, citation and retrieval metrics, bootstrap and McNemar on hand-made cases."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from saem.evaluation.metrics import (
    abstention_scores,
    answer_scores,
    citation_grounding,
    contains_answer,
    exact_match,
    is_abstention,
    is_relevant,
    mcnemar_exact,
    mean_retrieval_scores,
    normalize_answer,
    paired_bootstrap,
    percentile,
    retrieval_scores,
    rouge_l,
    token_f1,
    tokens,
)

pytestmark = pytest.mark.unit


# --- normalisation and tokens --------------------------------------------------------------------


def test_normalize_answer_drops_case_punctuation_articles_and_thousands_separators() -> None:
    assert normalize_answer("  The Transformer,  (2017)!") == "transformer 2017"
    assert normalize_answer("어휘 크기는 50,257개입니다.") == "어휘 크기는 50257개입니다"
    assert normalize_answer("1,2345 and 1,234,567") == "1 2345 and 1234567"  # not a thousands group
    assert normalize_answer("▁(U+2581)") == "▁ u+2581"  # symbols are kept, brackets are not


def test_tokens_split_hangul_into_syllables_and_keep_latin_words() -> None:
    assert tokens("GPT-2는 50,257개") == ["gpt", "2", "는", "50257", "개"]
    assert tokens("d_k의 제곱근") == ["d", "k", "의", "제", "곱", "근"]
    assert tokens("An apple") == ["apple"]
    assert tokens("...") == []


# --- answer metrics --------------------------------------------------------------------------------


def test_exact_match() -> None:
    assert exact_match("  The Seoul. ", ["seoul"]) == 1.0
    assert exact_match("Seoul city", ["Seoul"]) == 0.0
    assert exact_match("50257", ["50,257개", "50,257"]) == 1.0  # best over the gold answers
    assert exact_match("데이터 압축", ["데이터압축"]) == 0.0  # spacing is significant
    assert exact_match("anything", []) == 0.0


def test_token_f1_english_and_korean() -> None:
    assert token_f1("the cat sat on the mat", ["a cat on a mat"]) == pytest.approx(6 / 7)
    assert token_f1("cat cat cat", ["cat"]) == pytest.approx(0.5)  # repeats only count once per gold token
    assert token_f1("서울은", ["서울"]) == pytest.approx(0.8)  # character level: P 2/3, R 1
    assert token_f1("부산", ["서울"]) == 0.0
    assert token_f1("데이터 압축 기법", ["압축", "데이터 압축 기법"]) == 1.0
    assert token_f1("", ["서울"]) == 0.0
    assert token_f1("서울", []) == 0.0


def test_rouge_l_rewards_order_where_token_f1_does_not() -> None:
    assert token_f1("cat on mat sat", ["cat sat on mat"]) == 1.0
    assert rouge_l("cat on mat sat", ["cat sat on mat"]) == pytest.approx(0.75)  # LCS cat-on-mat
    # 모델을미세조정 vs 미세조정모델: LCS 미세조정 = 4; P 4/7, R 4/6
    assert rouge_l("모델을 미세 조정", ["미세 조정 모델"]) == pytest.approx(8 / 13)
    assert rouge_l("x", []) == 0.0


def test_contains_answer_respects_latin_word_edges_but_not_korean_particles() -> None:
    assert contains_answer("답은 5개입니다", ["5"]) == 1.0
    assert contains_answer("15개입니다", ["5"]) == 0.0
    assert contains_answer("서울은 한국의 수도입니다", ["서울"]) == 1.0
    assert contains_answer("The answer is GPT-2.", ["gpt-2"]) == 1.0
    assert contains_answer("GPT-20 was used", ["gpt-2"]) == 0.0
    assert contains_answer("어휘는 50257개", ["50,257개"]) == 1.0


def test_answer_scores_bundles_the_four_metrics() -> None:
    scores = answer_scores("서울은", ["서울"])
    assert (scores.exact_match, scores.contains) == (0.0, 1.0)
    assert scores.f1 == pytest.approx(0.8) and scores.rouge_l == pytest.approx(0.8)


# --- abstention and citations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I don’t know.", True),
        ("The documents do not contain this information.", True),
        ("문서에는 해당 정보가 없습니다.", True),
        ("제공된 자료에서 찾을 수 없습니다.", True),
        ("잘 모르겠습니다.", True),
        ("서울입니다.", False),
        ("The answer is 50,257 tokens.", False),
        ("LoRA는 저랭크 행렬을 사용합니다.", False),
    ],
)
def test_is_abstention(text: str, expected: bool) -> None:
    assert is_abstention(text) is expected


def test_abstention_scores() -> None:
    preds = ["I don't know.", "Seoul", "문서에 없습니다.", "Busan"]
    scores = abstention_scores(preds, [False, True, True, False])
    # abstained on items 0 and 2; unanswerable are 0 and 3 -> right on 0 and 1
    assert scores.accuracy == 0.5
    assert (scores.precision, scores.recall) == (0.5, 0.5)
    assert (scores.abstained, scores.unanswerable, scores.n) == (2, 2, 4)
    none = abstention_scores(["Seoul"], [True])
    assert none.accuracy == 1.0 and none.precision is None and none.recall is None
    with pytest.raises(ValueError):
        abstention_scores(["a"], [True, False])


def test_citation_grounding() -> None:
    items: list[dict[str, Any]] = [
        {"evidence": ["LoRA는 저랭크 행렬을 학습한다"]},
        {"evidence": ["BPE는 데이터 압축 기법이었다"]},
        {"evidence": ["GPT-2의 어휘는 50,257개"]},
        {"evidence": []},  # unanswerable: skipped
    ]
    citations = [
        ["앞 문장. LoRA는 저랭크   행렬을 학습한다. 뒤 문장.", "무관한 청크"],  # grounded (whitespace ignored)
        ["전혀 다른 내용의 청크"],  # cited, not grounded
        [],  # answerable, cites nothing
        ["LoRA는 저랭크 행렬을 학습한다"],
    ]
    scores = citation_grounding(citations, items)
    assert (scores.answerable, scores.cited, scores.grounded) == (3, 2, 1)
    assert scores.rate == 0.5
    assert scores.cited_rate == pytest.approx(2 / 3)
    assert scores.precision == pytest.approx(1 / 3)


# --- retrieval -------------------------------------------------------------------------------------


def test_is_relevant_follows_the_shared_rule() -> None:
    span = "abcdefghij"
    assert is_relevant("xx abcdefghij yy", [span])
    assert is_relevant("xx abcdef", [span])  # 6 of 10 characters = 60 %
    assert not is_relevant("xx abcde", [span])  # 50 %
    assert is_relevant("a b c", ["a  b\nc"])  # whitespace runs collapse
    assert not is_relevant("anything", [])


def test_retrieval_scores_single_span() -> None:
    scores = retrieval_scores(["x", "foo bar baz qux", "y"], ["bar baz"], k=3)
    assert (scores.recall, scores.hit, scores.mrr) == (1.0, 1.0, 0.5)
    assert scores.ndcg == pytest.approx(1 / math.log2(3))
    missed = retrieval_scores(["x", "y", "foo bar baz"], ["bar baz"], k=2)
    assert (missed.recall, missed.hit, missed.mrr, missed.ndcg) == (0.0, 0.0, 0.0, 0.0)


def test_retrieval_scores_two_spans() -> None:
    ranked = ["delta epsilon zeta", "unrelated", "alpha beta gamma!"]
    spans = ["alpha beta gamma", "delta epsilon"]
    at2 = retrieval_scores(ranked, spans, k=2)
    assert (at2.recall, at2.hit, at2.mrr) == (0.5, 1.0, 1.0)
    assert at2.ndcg == pytest.approx(1 / (1 + 1 / math.log2(3)))
    at3 = retrieval_scores(ranked, spans, k=3)
    assert at3.recall == 1.0
    assert at3.ndcg == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    # more relevant chunks in the corpus than spans: a larger ideal list lowers nDCG
    assert retrieval_scores(ranked, spans, k=3, n_relevant=3).ndcg < at3.ndcg


def test_retrieval_scores_korean_spans_ignore_whitespace_and_count_a_split_span() -> None:
    span = "임베딩은 단어를 고정된 크기의 벡터로 변환하여"
    ranked = [
        "토큰화는 문장을 나눕니다.",
        "임베딩은  단어를 고정된\n크기의 벡터로 변환하여, 의미를 담습니다.",  # whitespace differs: still relevant
    ]
    scores = retrieval_scores(ranked, [span], k=2)
    assert (scores.recall, scores.hit, scores.mrr) == (1.0, 1.0, 0.5)
    # a chunk boundary cut the span: >= 60 % of it as one piece is relevant, less is not
    head = span[: int(len(span) * 0.7)]
    assert retrieval_scores(["다른 내용", head], [span], k=2).mrr == 0.5
    assert retrieval_scores(["다른 내용", span[:8]], [span], k=2).hit == 0.0


def test_retrieval_scores_refuses_unanswerable_and_mean_skips_it() -> None:
    with pytest.raises(ValueError):
        retrieval_scores(["x"], [], k=5)
    items: list[dict[str, Any]] = [{"evidence": ["bar baz"]}, {"evidence": []}, {"evidence": ["nope"]}]
    mean, n = mean_retrieval_scores([["bar baz"], ["bar baz"], ["bar baz"]], items, k=1)
    assert n == 2
    assert (mean.recall, mean.hit, mean.mrr, mean.ndcg) == (0.5, 0.5, 0.5, 0.5)


# --- paired tests ------------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0
    assert percentile([float(i) for i in range(1, 21)], 100) == 20.0
    assert percentile([7.5], 95) == 7.5
    with pytest.raises(ValueError):
        percentile([], 50)


def test_bootstrap_constant_difference_collapses_to_it() -> None:
    result = paired_bootstrap([1.0] * 10, [0.75] * 10, resamples=2000, seed=1)
    assert (result.mean_diff, result.low, result.high) == (0.25, 0.25, 0.25)
    assert result.p_value == 0.0


def test_bootstrap_symmetric_noise_covers_zero_with_the_expected_width() -> None:
    noise = [1.0, -1.0] * 25  # mean 0, sd 1 -> standard error 1/sqrt(50) ≈ 0.141
    result = paired_bootstrap(noise, [0.0] * 50, resamples=4000, seed=7)
    assert result.mean_diff == 0.0 and result.p_value == 1.0
    assert result.low < 0.0 < result.high
    assert result.low == pytest.approx(-1.96 / math.sqrt(50), abs=0.04)
    assert result.high == pytest.approx(1.96 / math.sqrt(50), abs=0.04)


def test_bootstrap_detects_a_real_shift_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a = list(rng.normal(0.5, 1.0, 200))
    b = list(rng.normal(0.0, 1.0, 200))
    first = paired_bootstrap(a, b, resamples=3000, seed=3)
    assert first.low > 0.0 and first.p_value < 0.01
    assert paired_bootstrap(a, b, resamples=3000, seed=3) == first
    assert paired_bootstrap(a, b, resamples=3000, seed=4).low != first.low
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_mcnemar_exact_on_known_tables() -> None:
    a = [True] * 9 + [False] + [True] * 5 + [False] * 3  # 5 both right, 3 both wrong: ignored
    b = [False] * 9 + [True] + [True] * 5 + [False] * 3
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (9, 1)
    assert result.p_value == pytest.approx(22 / 1024)  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert mcnemar_exact([False] * 6, [True] * 6).p_value == pytest.approx(2 / 64)
    assert mcnemar_exact([True, False] * 5, [False, True] * 5).p_value == 1.0
    assert mcnemar_exact([True, True], [True, True]).p_value == 1.0
