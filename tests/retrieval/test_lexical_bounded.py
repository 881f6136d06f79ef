"""Bounded lexical search: common terms only score, never drive the scan; results stay exact."""

from __future__ import annotations

import random
import sqlite3

import pytest

from saem.retrieval.lexical import SCORE_POSTINGS_FACTOR, Plan, TermStats, plan_terms, search
from saem.text.analyzer import analyze

pytestmark = pytest.mark.unit


def _store(n: int = 400) -> sqlite3.Connection:
    """``n`` chunks (of words the analyzer keeps as they are): "the" in all, "common" in 40 %,
    "share" in 30 %, "mid" in 10 %, and a few rare words; lengths vary so BM25's length normalisation matters."""
    rng = random.Random(7)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(tokens, tokenize='unicode61 remove_diacritics 0')")
    rows = []
    for i in range(1, n + 1):
        words = ["the"] * rng.randint(1, 4) + [f"filler{rng.randint(0, 50)}" for _ in range(rng.randint(3, 30))]
        for word, share in (("common", 0.4), ("share", 0.3), ("mid", 0.1)):
            if rng.random() < share:
                words += [word] * rng.randint(1, 3)
        if i % 37 == 0:
            words += ["rare"] * rng.randint(1, 2)
        if i % 53 == 0:
            words.append("odd")
        rng.shuffle(words)
        rows.append((i, " ".join(words)))
    conn.executemany("INSERT INTO chunks_fts(rowid, tokens) VALUES (?, ?)", rows)
    return conn


def _matches(conn: sqlite3.Connection, term: str) -> set[int]:
    return {r[0] for r in conn.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{term}"',))}


# --- planning --------------------------------------------------------------------------------


def test_a_query_that_fits_the_budget_is_one_plain_or() -> None:
    df = {"a": 3, "b": 2, "nowhere": 0}
    assert plan_terms(["a", "nowhere", "b"], df, rows=10_000, max_postings=5) == Plan(["a", "b"], [])
    # a store no bigger than the budget never splits, however common the words are
    assert plan_terms(["a", "b"], {"a": 90, "b": 80}, rows=100, max_postings=100) == Plan(["a", "b"], [])


def test_rare_terms_match_and_common_ones_only_score() -> None:
    df = {"the": 900, "how": 300, "context": 40, "llama": 2, "window": 30}
    plan = plan_terms(["how", "the", "context", "window", "llama"], df, rows=1000, max_postings=50)
    # llama + window fit (32 <= 50), context would not; "the" is in over half the chunks
    assert plan == Plan(["window", "llama"], ["how", "context"])


def test_the_rarest_term_always_matches_and_only_common_words_find_nothing() -> None:
    assert plan_terms(["big", "bigger"], {"big": 200, "bigger": 300}, rows=1000, max_postings=50).match == ["big"]
    assert plan_terms(["the", "of"], {"the": 900, "of": 700}, rows=1000, max_postings=50) == Plan([], [])


def test_score_terms_have_their_own_budget() -> None:
    df = {"r": 1, "a": 30, "b": 30, "c": 30}
    plan = plan_terms(["a", "b", "c", "r"], df, rows=1000, max_postings=1)
    assert plan.match == ["r"]
    assert sum(df[t] for t in plan.score) <= SCORE_POSTINGS_FACTOR * 1 and plan.score == ["a"]


# --- searching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "the rare common share",
        "rare odd mid the",
        "the common odd",
        "mid the share common rare",
    ],
)
def test_bounded_search_ranks_like_the_full_query_among_chunks_with_a_rare_term(query: str) -> None:
    conn = _store()
    stats = TermStats()
    bounded = search(conn, query, 10, max_postings=25, stats=stats)
    full = search(conn, query, 400, max_postings=None)
    assert stats.rows == 400 and set(analyze(query)) == stats.df.keys()
    assert stats.df["the"] == 201  # counted only up to "over half"
    plan = plan_terms(analyze(query), stats.df, 400, 25)
    assert "the" not in plan.match + plan.score and plan.score  # the split did happen
    reachable = set().union(*(_matches(conn, t) for t in plan.match))
    expected = [(cid, s) for cid, s in full if cid in reachable][:10]
    assert [cid for cid, _ in bounded] == [cid for cid, _ in expected]
    # exact scores, up to the 1e-6 idf FTS5 gives "the" (it is in every chunk)
    assert [s for _, s in bounded] == pytest.approx([s for _, s in expected], abs=1e-4)


def test_a_query_of_words_in_most_chunks_finds_nothing_when_bounded() -> None:
    conn = _store()
    conn.execute("INSERT INTO chunks_fts(rowid, tokens) SELECT rowid + 1000, tokens FROM chunks_fts WHERE rowid <= 100")
    # "the" is in every chunk, "of" in over half: BM25 weighs both at idf 1e-6
    conn.execute("UPDATE chunks_fts SET tokens = tokens || ' of' WHERE rowid % 3 != 0")
    assert search(conn, "the of", 5, max_postings=25) == []
    assert len(search(conn, "the of", 5, max_postings=None)) == 5
    assert len(search(conn, "the", 5, max_postings=25)) == 5  # a single term is always searched


def test_counts_are_reused_from_the_stats() -> None:
    conn = _store()
    stats = TermStats()
    first = search(conn, "rare the mid", 5, max_postings=25, stats=stats)
    calls: list[str] = []
    conn.set_trace_callback(calls.append)
    assert search(conn, "rare the mid", 5, max_postings=25, stats=stats) == first
    assert not any("count(*)" in sql for sql in calls)
    assert len([sql for sql in calls if "bm25" in sql]) == 2  # the match query, then the score query


def test_within_ranks_only_the_given_chunks_with_their_whole_store_scores() -> None:
    conn = _store()
    everything = dict(search(conn, "common mid rare", 400, max_postings=None))
    within = sorted(everything)[::7]  # a seventh of the matching chunks, most far from the top
    assert 10 < len(within) <= 50
    hits = search(conn, "common mid rare", 10, max_postings=50, within=within)
    best = sorted(within, key=lambda i: (-everything[i], i))[:10]
    assert [i for i, _ in hits] == best  # all within the budget: one plain OR, exact
    assert [s for _, s in hits] == pytest.approx([everything[i] for i in best], abs=1e-9)
    wide = list(range(1, 401))  # over the budget: bounded as without ``within``
    assert search(conn, "rare the mid", 5, max_postings=25, within=wide) == search(
        conn, "rare the mid", 5, max_postings=25
    )
    assert search(conn, "common", 5, within=[]) == []
    assert search(conn, "common", 5, within=[100_000]) == []


@pytest.mark.parametrize("skip", [0, 25, 35, 200])
def test_a_large_within_gives_the_exact_top_k_whether_or_not_the_top_holds_k_of_it(skip: int) -> None:
    conn = _store()
    everything = search(conn, "common mid", 400, max_postings=None)
    within = [i for i, _ in everything[skip:]] + [i for i in range(1, 401) if i not in dict(everything)]
    assert len(within) * 4 >= 400  # a large share of the store: the top 4k are looked at first
    hits = search(conn, "common mid", 10, max_postings=None, within=within)
    assert [i for i, _ in hits] == [i for i, _ in everything[skip : skip + 10]]
    assert [s for _, s in hits] == pytest.approx([s for _, s in everything[skip : skip + 10]])
