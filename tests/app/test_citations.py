"""Citation markers, mapping to chunks, quote verification, and language detection."""

from __future__ import annotations

import pytest

from saem.app.citations import parse_markers, resolve_citations, verify_quote
from saem.app.language import detect_language, hangul_share, language_matches
from saem.app.types import Source

pytestmark = pytest.mark.unit

TOP_P = "Top-p sampling keeps the smallest set of tokens whose probability mass exceeds p. Temperature rescales logits."
KO = "바이트 수준 BPE는 알 수 없는 문자가 없습니다. 한국어는 교착어라서 조사가 붙습니다."
SOURCES = [
    Source(1, "11", "/d/sampling.md", 100, 100 + len(TOP_P), "Sampling", None, 0.9, TOP_P),
    Source(2, "22", "/d/tokens.md", 0, len(KO), "토크나이저", 3, 0.5, KO),
]


def test_valid_marker_maps_to_the_chunk_with_source_span_and_heading() -> None:
    [c] = resolve_citations("Top-p keeps a small set of tokens [1].", SOURCES)
    assert (c.n, c.status, c.supported) == (1, "unverified", True)
    assert (c.chunk_id, c.source, c.start, c.end, c.heading) == (
        "11",
        "/d/sampling.md",
        100,
        100 + len(TOP_P),
        "Sampling",
    )
    assert c.claim == "Top-p keeps a small set of tokens."
    assert c.overlap is not None and c.overlap > 0.5


def test_out_of_range_marker_is_invalid_and_not_support() -> None:
    cites = resolve_citations("Claim [1]. Another claim [9].", SOURCES)
    assert [(c.n, c.status) for c in cites] == [(1, "unverified"), (9, "invalid")]
    assert not cites[1].supported and "no source [9]" in cites[1].reason
    assert resolve_citations("x [1]", [])[0].status == "invalid"


def test_quote_is_verified_against_the_cited_chunk() -> None:
    text = 'It keeps "the smallest set of tokens" [1], and "the largest set of tokens" [1]. 「조사가 붙습니다」[2]'
    cites = resolve_citations(text, SOURCES)
    assert [(c.n, c.status) for c in cites] == [(1, "verified"), (1, "unsupported"), (2, "verified")]
    ok, bad, ko = cites
    assert ok.quote == "the smallest set of tokens"
    assert (ok.quote_start, ok.quote_end) == (100 + TOP_P.index("the smallest"), 100 + TOP_P.index(" whose"))
    assert not bad.supported and "not in source [1]" in bad.reason
    assert ko.quote == "조사가 붙습니다" and ko.supported


def test_quote_of_the_wrong_chunk_is_unsupported() -> None:
    [c] = resolve_citations('"Temperature rescales logits" [2]', SOURCES)
    assert c.status == "unsupported" and not c.supported


def test_normalised_and_elided_quotes_are_verified() -> None:
    assert verify_quote("TOP-P  sampling keeps", TOP_P) == (True, None)
    assert verify_quote("Top-p sampling … exceeds p", TOP_P) == (True, None)
    assert verify_quote("exceeds p … Top-p sampling", TOP_P) == (False, None)
    assert verify_quote("", TOP_P) == (False, None)
    [c] = resolve_citations("“Temperature rescales logits.” [1]", SOURCES)
    assert c.status == "verified"


def test_marker_forms_and_duplicates() -> None:
    marks = parse_markers('"keeps the smallest" [1][2] and [1, 2]. Then [1].')
    assert [(m.n, m.quote) for m in marks] == [
        (1, "keeps the smallest"),
        (2, "keeps the smallest"),
        (1, None),
        (2, None),
        (1, None),
    ]
    cites = resolve_citations('"keeps the smallest" [1][2] and [1, 2]. Then [1].', SOURCES)
    assert [(c.n, c.status) for c in cites] == [
        (1, "verified"),
        (2, "unsupported"),
        (1, "unverified"),
        (2, "unverified"),
    ]
    assert resolve_citations("No markers at all.", SOURCES) == []


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("top-p는 무엇을 조절하나요?", "ko"),
        ("LoRA 파인튜닝에서 rank는 무엇인가요?", "ko"),
        ("What does top-p control?", "en"),
        ("What does 토크나이저 mean in this context?", "en"),
        ("네", "ko"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_detect_language_edge_cases() -> None:
    assert detect_language("42?") is None and detect_language("42?", default="en") == "en"
    assert hangul_share("") is None and hangul_share("가") == 1.0
    assert language_matches("LoRA는 low-rank adaptation의 약자이며 행렬을 학습합니다 [1].", "ko")
    assert not language_matches("LoRA trains two small low-rank matrices instead of the weights [1].", "ko")
    assert not language_matches("이 답변은 한국어로 쓰였습니다. 영어가 아닙니다.", "en")
    assert language_matches("Top-p는 nucleus sampling is the English term.", "en")
    assert language_matches("OK [1]", "ko")  # too short to judge


def test_one_marker_rule_finds_counts_and_strips_every_form() -> None:
    from saem.text.markers import cited_numbers, strip_markers

    text = "a [1], b [2, 3] and c [4][5]; not [x] or [12345]."
    assert cited_numbers(text) == {1, 2, 3, 4, 5}
    assert strip_markers(text) == "a, b and c; not [x] or [12345]."
    assert detect_language("토큰 예산을 짭니다 [1, 2]") == "ko"
