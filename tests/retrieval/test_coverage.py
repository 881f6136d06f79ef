"""Key terms of a question that the corpus never mentions (the abstention lookup)."""

from __future__ import annotations

import sqlite3

import pytest

from saem.retrieval.coverage import key_terms, missing_terms
from saem.text.analyzer import to_fts_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("How does FlashAttention reduce GPU memory use?", ["FlashAttention", "GPU"]),
        ("Chinchilla 스케일링 법칙에 따르면?", ["Chinchilla"]),  # capitalised name in a Korean question
        ("In the Hanbit Media article, what is masked?", []),  # may be written in Hangul in the docs
        ("GGUF의 Q3_K_S 형식은 몇 비트인가요?", ["GGUF", "Q3_K_S"]),
        ("What is the dimension of all-MiniLM-L6-v2?", ["all-MiniLM-L6-v2"]),
        ("what does lora train? LoRA, LoRA and iPhone", ["LoRA", "iPhone"]),
        ("토크나이저는 무엇인가요?", []),
        ("A I x", []),  # one-letter words are never names
        ("How does typing.override or lru_cache work, e.g. with --disable-gil?",
         ["typing.override", "lru_cache", "disable-gil"]),  # identifiers and options; not "e.g"
        ("Is a read-only, built-in file cached?", []),  # hyphenated words are not names
        ("", []),
    ],
)
def test_key_terms(question: str, terms: list[str]) -> None:
    assert key_terms(question) == terms


def test_key_terms_are_capped() -> None:
    assert len(key_terms(" ".join(f"T{i}" for i in range(50)))) == 8


@pytest.fixture
def conn() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(tokens, tokenize='unicode61 remove_diacritics 0')")
    chunks = [
        "GGUF 파일 이름에는 흔히 Q4_0, Q4_K_M 같은 양자화 유형이 붙습니다.",
        "BERT uses WordPiece; GPT-2 uses byte-level BPE with 50,257 tokens.",
        "all-MiniLM-L6-v2 maps sentences to 384 dimensions.",
    ]
    db.executemany("INSERT INTO chunks_fts(rowid, tokens) VALUES (?, ?)",
                   [(i, to_fts_text(t)) for i, t in enumerate(chunks, 1)])  # fmt: skip
    return db


def test_missing_terms_across_languages(conn: sqlite3.Connection) -> None:
    # an English question finds a term written inside Korean text, and the reverse
    assert missing_terms(conn, "How many bits per weight does Q4_0 use?") == []
    assert missing_terms(conn, "GPT-2 토크나이저의 어휘 크기는?") == []
    assert missing_terms(conn, "all-MiniLM-L6-v2의 차원은?") == []
    assert missing_terms(conn, "How does FlashAttention use the GPU?") == ["FlashAttention", "GPU"]
    assert missing_terms(conn, "Q3_K_S는 몇 비트?") == ["Q3_K_S"]


def test_a_term_is_a_phrase_not_scattered_tokens(conn: sqlite3.Connection) -> None:
    # "q", "4", "k" and "m" all occur, in that order only as Q4_K_M; "M4" has "m" and "4" apart
    assert missing_terms(conn, "What is Q4_K_M?") == []
    assert missing_terms(conn, "What is the M4 format?") == ["M4"]


def test_hostile_terms_are_data_not_fts_syntax(conn: sqlite3.Connection) -> None:
    assert missing_terms(conn, 'What is NEAR "OR" AND NOT x*? DROP TABLE chunks_fts;') == [
        "NEAR", "OR", "AND", "NOT", "DROP", "TABLE", "chunks_fts"
    ]  # fmt: skip
    assert conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 3
