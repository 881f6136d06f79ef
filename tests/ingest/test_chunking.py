"""Chunking and sentence splitting on Korean and English text."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saem.ingest.chunking import chunk_document
from saem.ingest.loaders.text import load_markdown
from saem.ingest.types import ChunkSpec, LoadedDocument, Section
from saem.text.sentences import split_sentences

pytestmark = pytest.mark.unit

SPECIALS = 2  # like [CLS] ... [SEP]


def char_tokens(s: str) -> int:
    """A fake subword tokenizer: one token per 3 characters plus two special tokens."""
    return SPECIALS + math.ceil(len(s) / 3)


class CountingTokenizer:
    def __init__(self, fn: Callable[[str], int] = char_tokens) -> None:
        self.fn = fn
        self.calls = 0
        self.chars = 0

    def __call__(self, s: str) -> int:
        self.calls += 1
        self.chars += len(s)
        return self.fn(s)


KO_SENTENCES = [
    "샘은 로컬에서 동작하는 검색 증강 생성 도구입니다.",
    "문서를 잘게 나누어 색인합니다.",
    "질문을 받으면 관련 문단을 찾아요.",
    "정말 빠를까?",
    "그렇죠.",
    "버전 0.9에서는 한국어 문장 분리를 지원한다.",
]
EN_SENTENCES = [
    "Saem chunks documents by sentence, e.g. at periods and question marks.",
    "Version 3.11.7 of Python is used here.",
    "Does it respect decimals like 0.9?",
    "Yes!",
    "Dr. Kim wrote the first draft of the splitter.",
]


def paragraph(n: int, seed: int = 0) -> str:
    pool = KO_SENTENCES + EN_SENTENCES
    return " ".join(pool[(seed + i * 7) % len(pool)] for i in range(n))


def chunk(
    doc: LoadedDocument, budget: int = 40, overlap: int = 12, count: Callable[[str], int] = char_tokens
) -> list[ChunkSpec]:
    return chunk_document(doc, count_tokens=count, chunk_tokens=budget, overlap_tokens=overlap)


def assert_well_formed(doc: LoadedDocument, chunks: list[ChunkSpec], budget: int, count: Callable[[str], int]) -> None:
    for c in chunks:
        assert c.text == doc.text[c.start : c.end]
        assert c.text.strip() == c.text and c.text
        assert c.n_tokens == count(c.text)
        assert c.n_tokens <= budget or len(c.text) == 1
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    missing = [i for i, ch in enumerate(doc.text) if not ch.isspace() and not covered[i]]
    assert missing == [], f"text not covered by any chunk at {missing[:5]}"


# -- sentences ---------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def test_korean_sentence_endings() -> None:
    text = "오늘은 날씨가 좋다. 내일은 비가 올까? 그렇죠. 네, 맞아요! 이것은 끝이다.다음 문장은 붙어 있다."
    assert sentences(text) == [
        "오늘은 날씨가 좋다.",
        "내일은 비가 올까?",
        "그렇죠.",
        "네, 맞아요!",
        "이것은 끝이다.",
        "다음 문장은 붙어 있다.",
    ]


def test_english_abbreviations_decimals_and_versions_do_not_split() -> None:
    text = (
        "Use e.g. the CLI. Python 3.11.7 is fine. Pi is 3.14 approx. so it works. "
        "Mr. Lee and J. R. R. Tolkien agree. Done."
    )
    assert sentences(text) == [
        "Use e.g. the CLI.",
        "Python 3.11.7 is fine.",
        "Pi is 3.14 approx. so it works.",
        "Mr. Lee and J. R. R. Tolkien agree.",
        "Done.",
    ]


def test_newlines_cjk_stops_and_quotes() -> None:
    assert sentences("제목 줄\n본문 첫 줄\n\n새 문단.") == ["제목 줄", "본문 첫 줄", "새 문단."]
    assert sentences('中文句子。日本語です！ He said "stop." Then left.') == [
        "中文句子。",
        "日本語です！",
        'He said "stop."',
        "Then left.",
    ]
    assert sentences("1. Install it\n2. Run it") == ["1. Install it", "2. Run it"]
    assert [s for s in sentences("a line\nwrapped line.")] == ["a line", "wrapped line."]
    assert [
        "a line\nwrapped line."[a:b] for a, b in split_sentences("a line\nwrapped line.", break_on_newline=False)
    ] == ["a line\nwrapped line."]


def test_sentence_spans_are_trimmed_offsets_into_a_window() -> None:
    text = "xx  첫 문장이다.   둘째 문장이다.  yy"
    spans = split_sentences(text, 2, len(text) - 2)
    assert [text[a:b] for a, b in spans] == ["첫 문장이다.", "둘째 문장이다."]
    assert split_sentences("   \n\t ") == []


def test_sentence_splitting_is_linear_on_a_huge_line() -> None:
    text = "가" * 2_000_000 + ". " + "B" * 1_000_000
    assert [(b - a) for a, b in split_sentences(text)] == [2_000_001, 1_000_000]


# -- chunking ----------------------------------------------------------------------------------


def test_korean_and_english_chunks_respect_budget_and_span_invariant() -> None:
    text = paragraph(60)
    doc = LoadedDocument(text=text)
    chunks = chunk(doc, budget=60, overlap=15)
    assert len(chunks) > 5
    assert_well_formed(doc, chunks, 60, char_tokens)
    assert max(c.n_tokens for c in chunks) > 0.7 * 60, "chunks should be reasonably full"


def test_chunks_start_and_end_on_sentence_boundaries() -> None:
    text = paragraph(50, seed=3)
    spans = split_sentences(text)
    starts, ends = {a for a, _ in spans}, {b for _, b in spans}
    chunks = chunk(LoadedDocument(text=text), budget=70, overlap=20)
    assert all(c.start in starts and c.end in ends for c in chunks)


def test_consecutive_chunks_overlap_by_whole_sentences_within_the_limit() -> None:
    text = paragraph(60, seed=1)
    starts = {a for a, _ in split_sentences(text)}
    # Every sentence has at most 24 content tokens, so whole sentences always fit an overlap of 30.
    assert max(char_tokens(text[a:b]) - SPECIALS for a, b in split_sentences(text)) <= 24
    chunks = chunk(LoadedDocument(text=text), budget=80, overlap=30)
    pairs = list(zip(chunks, chunks[1:], strict=False))
    assert len(pairs) > 5
    for a, b in pairs:
        assert b.start < a.end
        assert b.start in starts
        assert char_tokens(text[b.start : a.end]) - SPECIALS <= 30
    no_overlap = chunk(LoadedDocument(text=text), budget=60, overlap=0)
    assert all(b.start >= a.end for a, b in zip(no_overlap, no_overlap[1:], strict=False))


def test_overlap_falls_back_to_a_word_tail_when_sentences_are_long() -> None:
    words = [f"word{i}" for i in range(400)]
    text = " ".join(words) + "."  # one long sentence
    chunks = chunk(LoadedDocument(text=text), budget=40, overlap=10)
    assert len(chunks) > 5
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end
        assert text[b.start - 1] == " ", "overlap must start at a word"
    for c in chunks:
        assert c.end == len(text) or text[c.end] == " ", "pieces must end at a word"


def test_markdown_structure_heading_paths_and_no_merge_across_top_sections() -> None:
    md = (
        "# 사용 설명서\n\n짧은 소개.\n\n"
        "## 설치\n\n" + paragraph(12) + "\n\n### 리눅스\n\n리눅스는 쉽다.\n\n### 윈도우\n\n윈도우도 쉽다.\n\n"
        "## 사용법\n\n" + paragraph(3, seed=5) + "\n"
    )
    doc = load_markdown(md.encode(), __import__("pathlib").Path("m.md"))
    chunks = chunk(doc, budget=80, overlap=10)
    assert_well_formed(doc, chunks, 80, char_tokens)
    top = {s.heading_path[:2]: s for s in doc.sections}
    bounds = {
        key: (
            min(s.start for s in doc.sections if s.heading_path[:2] == key),
            max(s.end for s in doc.sections if s.heading_path[:2] == key),
        )
        for key in top
    }
    for c in chunks:
        inside = [k for k, (a, b) in bounds.items() if a <= c.start and c.end <= b]
        assert inside, f"chunk crosses a top-level section: {c.text[:40]!r}"
        assert c.heading_path[:2] == inside[0] or c.heading_path == inside[0]
    paths = [c.heading_path for c in chunks]
    assert paths[0] == ("사용 설명서",)
    assert ("사용 설명서", "사용법") in paths
    small_subsections = [c for c in chunks if "리눅스는 쉽다." in c.text]
    assert len(small_subsections) == 1
    assert "윈도우도 쉽다." in small_subsections[0].text, "small sub-sections merge"
    assert small_subsections[0].heading_path == ("사용 설명서", "설치")


def test_full_chunk_ends_at_a_subsection_boundary() -> None:
    a = paragraph(4)
    b = paragraph(4, seed=2)
    text = f"{a}\n{b}"
    doc = LoadedDocument(
        text=text,
        sections=(Section(0, len(a), ("Doc", "A", "x")), Section(len(a) + 1, len(text), ("Doc", "A", "y"))),
    )
    chunks = chunk(doc, budget=200, overlap=20)
    assert any(c.end == len(a) for c in chunks)
    assert [c.heading_path for c in chunks if c.start <= len(a)][-1] == ("Doc", "A", "x")


def test_pages_are_carried_and_do_not_split_chunks() -> None:
    p1, p2 = "첫 쪽의 문장이다. 계속된다.", "둘째 쪽의 문장이다. 끝."
    text = f"{p1}\n\n{p2}"
    doc = LoadedDocument(text=text, sections=(Section(0, len(p1), (), 1), Section(len(p1) + 2, len(text), (), 2)))
    [only] = chunk(doc, budget=100, overlap=0)
    assert only.page == 1 and only.text == text
    small = chunk(doc, budget=7, overlap=0)
    assert [(c.page, c.text) for c in small] == [
        (1, "첫 쪽의 문장이다."),
        (1, "계속된다."),
        (2, "둘째 쪽의 문장이다. 끝."),
    ]


def test_five_megabyte_line_without_spaces_gives_bounded_chunks_in_linear_calls() -> None:
    text = "가나다라마바사" * (5 * 1024 * 1024 // 7)
    counter = CountingTokenizer()
    chunks = chunk_document(LoadedDocument(text=text), count_tokens=counter, chunk_tokens=256, overlap_tokens=32)
    assert_well_formed(LoadedDocument(text=text), chunks, 256, char_tokens)
    assert max(len(c.text) for c in chunks) <= 3 * 256
    assert counter.chars < 6 * len(text), "tokenizer work must stay linear in the text"
    assert counter.calls < 5 * len(chunks)


def test_tokenizer_calls_are_linear_not_quadratic() -> None:
    text = paragraph(2_000)
    counter = CountingTokenizer()
    chunks = chunk_document(LoadedDocument(text=text), count_tokens=counter, chunk_tokens=128, overlap_tokens=24)
    assert counter.calls <= 4 * len(chunks) + 3
    assert counter.chars <= 4 * len(text)


def test_whitespace_only_and_empty_documents_give_no_chunks() -> None:
    assert chunk(LoadedDocument(text="")) == []
    assert chunk(LoadedDocument(text=" \n\n\t\u3000 ")) == []
    doc = LoadedDocument(text="  a  ", sections=(Section(0, 2, ("h",)), Section(2, 5, ("h", "i"))))
    [c] = chunk(doc)
    assert (c.text, c.start, c.heading_path) == ("a", 2, ("h", "i"))


def test_indivisible_character_is_the_only_oversized_chunk() -> None:
    def heavy(s: str) -> int:
        return sum(12 if ch == "😀" else 1 for ch in s)

    text = "ok 😀 fine."
    chunks = chunk(LoadedDocument(text=text), budget=5, overlap=0, count=heavy)
    over = [c for c in chunks if c.n_tokens > 5]
    assert [c.text for c in over] == ["😀"]
    assert "".join(c.text for c in chunks) == "ok😀fine."


def test_chunking_is_deterministic() -> None:
    md = "# A\n\n" + paragraph(80) + "\n\n# B\n\n" + paragraph(40, seed=4)
    doc = load_markdown(md.encode(), __import__("pathlib").Path("d.md"))
    first = chunk(doc, budget=50, overlap=10)
    assert first == chunk(doc, budget=50, overlap=10)
    assert first != chunk(doc, budget=51, overlap=10)


@pytest.mark.parametrize(("budget", "overlap"), [(10, 10), (10, -1), (2, 0), (0, 0)])
def test_invalid_budgets_raise(budget: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk(LoadedDocument(text="문장이다."), budget=budget, overlap=overlap)


def test_sections_out_of_order_or_overlapping_are_tolerated() -> None:
    text = paragraph(10)
    doc = LoadedDocument(text=text, sections=(Section(50, 400, ("b",)), Section(0, 100, ("a",)), Section(390, 10_000)))
    assert_well_formed(doc, chunk(doc), 40, char_tokens)


ALPHABET = st.sampled_from(list("가나다 라마. 바사? 아자! e.g. ab 0.9 \n\n\t 。 x") + ["다. ", "요. ", " "])


@st.composite
def documents(draw: st.DrawFn) -> LoadedDocument:
    text = "".join(draw(st.lists(ALPHABET, max_size=400)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=6))))
    bounds = [0, *cuts, len(text)]
    names = draw(st.lists(st.sampled_from(["A", "B", "가"]), min_size=len(bounds), max_size=len(bounds)))
    sections = tuple(
        Section(a, b, tuple(names[: 1 + i % 3]), page=i + 1)
        for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))
        if b > a
    )
    return LoadedDocument(text=text, sections=sections)


@settings(max_examples=150, deadline=None)
@given(doc=documents(), budget=st.integers(4, 40), overlap_share=st.floats(0, 0.9))
def test_property_span_invariant_budget_and_coverage(doc: LoadedDocument, budget: int, overlap_share: float) -> None:
    overlap = int((budget - SPECIALS - 1) * overlap_share)
    chunks = chunk(doc, budget=budget, overlap=overlap)
    assert_well_formed(doc, chunks, budget, char_tokens)
