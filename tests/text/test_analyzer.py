"""The lexical analyzer (Korean morphemes, bigram fallback) and FTS5 search escaping."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saem.retrieval.lexical import fts_match_expression, search
from saem.text import analyzer
from saem.text.analyzer import analyze, analyze_many, hangul_bigrams, has_hangul, to_fts_text, to_fts_texts

pytestmark = pytest.mark.unit

HANGUL = st.text(alphabet=st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3), min_size=1, max_size=12)


def test_particles_and_endings_are_dropped() -> None:
    assert analyze("토크나이저는") == analyze("토크나이저가") == ["토크나이저"]
    tokens = analyze("어텐션은 무엇인가요?")
    assert "어텐션" in tokens and "은" not in tokens and "?" not in tokens
    assert "나누" in analyze("텍스트를 토큰으로 나눕니다")


def test_one_syllable_verb_and_adverb_stems_are_dropped() -> None:
    tokens = analyze("Q4_0으로 양자화하면 가중치 하나당 몇 비트를 쓰게 되나요?")
    assert "쓰" not in tokens and "되" not in tokens  # light verbs / homographs
    assert {"양자", "가중", "비트", "몇"} <= set(tokens)  # nouns and numerals of one syllable stay
    assert "있" not in analyze("결과가 더 잘 나와 있습니다") and "나오" in analyze("결과가 더 잘 나와 있습니다")
    assert "창" in analyze("컨텍스트 창이 큽니다")  # a one-syllable noun is kept
    assert analyze("있다")  # a text left with no Hangul token falls back to bigrams


def test_english_words_are_stemmed_so_other_forms_of_a_word_match() -> None:
    assert analyze("configure") == analyze("configured") == analyze("configuration")
    assert analyze("sorting lists") == analyze("sorted list")
    assert analyze("캐시를 configure하는 caches") == ["캐시", "configur", "cach"]  # in Korean text too


def test_latin_words_are_lowercased_the_same_with_or_without_hangul() -> None:
    assert analyze("BERT's WordPiece, GPT-2 & top_p=0.9") == [
        "bert",
        "s",
        "wordpiec",  # English words are stemmed (Snowball)
        "gpt",
        "2",
        "top",
        "p",
        "0",
        "9",
    ]
    mixed = analyze("BERT의 WordPiece와 GPT-2 토크나이저")
    assert mixed == ["bert", "wordpiec", "gpt", "2", "토크나이저"]
    assert analyze("...!?  ") == []


@pytest.mark.parametrize("term", ["Q4_0", "Q3_K_S", "GPT2", "all-MiniLM-L6-v2", "v1.5", "50,257"])
def test_a_latin_term_gives_the_same_tokens_in_english_and_korean_text(term: str) -> None:
    # Kiwi splits letters from digits inside Hangul text; the plain path must split the same way,
    # or an English query never finds the term in a Korean chunk
    english = analyze(f"the {term} format")
    korean = [t for t in analyze(f"{term} 형식으로") if not has_hangul(t)]
    assert english[1:-1] == korean
    assert all(not (any(c.isdigit() for c in t) and any(c.isalpha() for c in t)) for t in korean)


def test_bigram_fallback_without_kiwi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analyzer, "_kiwi", None)
    monkeypatch.setattr(analyzer, "_kiwi_failed", True)
    assert analyze("양자화 LoRA") == ["lora", "양자", "자화"]
    assert analyze("요") == ["요"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(HANGUL, st.text(max_size=30), HANGUL.map(lambda h: f"BERT의 {h}는 3.14")), max_size=8))
def test_the_batch_analysis_ingestion_uses_gives_what_analyze_gives(texts: list[str]) -> None:
    # the index is written with analyze_many and queried with analyze: they must never differ
    assert analyze_many(texts) == [analyze(t) for t in texts]
    assert to_fts_texts(texts) == [to_fts_text(t) for t in texts]


def test_batch_analysis_without_kiwi_falls_back_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analyzer, "_kiwi", None)
    monkeypatch.setattr(analyzer, "_kiwi_failed", True)
    texts = ["양자화 LoRA", "plain English", "", "요"]
    assert analyze_many(texts) == [["lora", "양자", "자화"], ["plain", "english"], [], ["요"]]


def test_hangul_bigrams() -> None:
    assert hangul_bigrams("한국어 텍스트 a 가") == ["한국", "국어", "텍스", "스트", "가"]


@settings(max_examples=60, deadline=None)
@given(HANGUL, st.text(max_size=10))
def test_a_hangul_query_never_analyzes_to_nothing(hangul: str, other: str) -> None:
    tokens = analyze(other + hangul + other)
    assert tokens and any(has_hangul(t) for t in tokens)


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=40))
def test_any_query_is_safe_fts(query: str) -> None:
    conn = _fts_db()
    expr = fts_match_expression(query)
    if expr is not None:
        conn.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (expr,)).fetchall()
    assert isinstance(search(conn, query, 3), list)


def _fts_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(tokens, tokenize='unicode61 remove_diacritics 0')")
    docs = [
        "토크나이저는 텍스트를 토큰으로 나눕니다.",
        "Top-p sampling keeps the smallest set of tokens.",
        'He said "near" OR 1=1 and NEAR(a b) with * and col:value',
        "양자화는 모델 가중치의 비트 수를 줄입니다.",
    ]
    conn.executemany(
        "INSERT INTO chunks_fts(rowid, tokens) VALUES (?, ?)", [(i + 1, to_fts_text(d)) for i, d in enumerate(docs)]
    )
    return conn


@pytest.mark.parametrize(
    "query", ['"', "*", "NEAR", "OR 1=1", "a OR b", "tokens:x", "NEAR(a b)", "^foo", "-x", "'; DROP"]
)
def test_fts_syntax_is_never_interpreted(query: str) -> None:
    conn = _fts_db()
    hits = search(conn, query, 5)
    expr = fts_match_expression(query)
    if expr is not None:
        assert all(part.startswith('"') and part.endswith('"') for part in expr.split(" OR "))
    if query == "OR 1=1":
        assert [i for i, _ in hits] == [3]  # "or" and "1" are ordinary words here
    assert conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 4


def test_search_ranks_korean_by_morpheme() -> None:
    conn = _fts_db()
    assert search(conn, "토크나이저가 뭐예요?", 2)[0][0] == 1
    assert search(conn, "양자화란", 2)[0][0] == 4
    assert search(conn, "SAMPLING", 2)[0][0] == 2
    assert search(conn, "sampling", 0) == [] and search(conn, "!!!", 3) == []
    scores = [s for _, s in search(conn, "토큰 sampling tokens", 4)]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
