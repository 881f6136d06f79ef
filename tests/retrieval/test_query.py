"""Query hygiene's embedder fit: a query is cut to what a ``TokenLimitedEmbedder`` reads, and only
for one (``saem.retrieval._query.fit_embedder``)."""

from __future__ import annotations

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from saem.models.protocols import TokenLimitedEmbedder
from saem.retrieval._query import fit_embedder
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit


class Counting(HashEmbeddings):
    """The fake, reading ``max_seq_length`` tokens (one a word) and counting how often it counted."""

    def __init__(self, max_seq_length: int | None) -> None:
        super().__init__(16)
        self.max_seq_length = max_seq_length
        self.counted = 0

    def tokenizer_count(self, text: str) -> int:
        self.counted += 1
        return super().tokenizer_count(text)


class CountsButSaysNoLimit(DeterministicFakeEmbedding):
    """Has a counter but no ``max_seq_length``: not a TokenLimitedEmbedder."""

    counted: int = 0

    def tokenizer_count(self, text: str) -> int:
        self.counted += 1
        return 0


def test_a_query_is_cut_to_a_token_limited_embedders_limit() -> None:
    emb = Counting(4)
    cut, warnings = fit_embedder("one two three four five six", emb)
    assert cut == "one two three four" and len(warnings) == 1 and "6 tokens and the embedder reads 4" in warnings[0]
    assert fit_embedder("one two", emb) == ("one two", [])


def test_no_limit_or_no_protocol_leaves_the_query_alone_uncounted() -> None:
    unlimited = Counting(None)
    assert fit_embedder("one two three", unlimited) == ("one two three", []) and unlimited.counted == 0
    other = CountsButSaysNoLimit(size=16)
    assert not isinstance(other, TokenLimitedEmbedder)
    assert fit_embedder("one two three", other) == ("one two three", []) and other.counted == 0
