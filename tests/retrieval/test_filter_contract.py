"""One filter contract, two faces: ``FaissVectorStore(filter=)`` and ``HybridSearcher(filters=)``.

Both faces hold the same chunks with the same metadata (the vector store is filled from the
hybrid data dir's catalogue), so every filter must select the same chunks on both, refuse the
same bad filters with the same message, and select *before* ranking: a filter whose chunks rank
far below the unfiltered top still gives ``k`` hits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saem.app.saem import Saem
from saem.retrieval.hybrid import HybridConfig, HybridSearcher
from saem.retrieval.vectorstore import FaissVectorStore
from saem.testing import HashEmbeddings

# real SQLite files on disk and a real FAISS index on both faces (the embedder is the hash fake)
pytestmark = pytest.mark.integration

QUERY = "LoRA adapters train low-rank matrices"
N_LORA, N_NOTES = 40, 4

Search = Callable[[str, int, Any], list[str]]  # query, k, filter -> chunk texts, best first


@dataclass(frozen=True)
class Corpus:
    data_dir: Path
    rows: list[dict[str, Any]]  # the metadata both faces hold, plus "text"

    def select(self, keep: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {r["text"] for r in self.rows if keep(r)}

    def source(self, name: str) -> str:
        return next(r["source"] for r in self.rows if r["source"].endswith(name))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("contract")
    for i in range(N_LORA):  # all of them closer to QUERY than any note
        path = root / "docs" / "lora" / f"a{i:02}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# LoRA\n\nLoRA adapters train low-rank matrices, variant {i}.\n", encoding="utf-8")
    for i in range(N_NOTES):
        path = root / "docs" / "notes" / f"b{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Notes\n\nQuantization keeps weights in four bits, note {i}.\n", encoding="utf-8")
    for i in range(2):  # nested headings: Hit.heading is "Guide › Install"
        path = root / "docs" / "guide" / f"g{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Guide\n\n## Install\n\nUnpack the archive into a folder, step {i}.\n", encoding="utf-8")
    data = root / "data"
    Saem(data_dir=data, embedder=HashEmbeddings(64)).ingest(root / "docs")
    with sqlite3.connect(data / "saem.db") as conn:  # pages, as a PDF would give them: 1-3, or none
        conn.execute("UPDATE chunks SET page = CASE WHEN id % 4 = 0 THEN NULL ELSE id % 3 + 1 END")
        rows = [
            {"chunk_id": r[0], "text": r[1], "source": r[2], "start": r[3], "end": r[4],
             "heading": " › ".join(json.loads(r[5])), "page": r[6]}
            for r in conn.execute(
                "SELECT c.id, c.text, s.path, c.start, c.end, c.heading_path, c.page "
                "FROM chunks AS c JOIN sources AS s ON s.id = c.source_id ORDER BY c.id"
            )
        ]  # fmt: skip
    conn.close()
    assert {r["heading"] for r in rows} == {"LoRA", "Notes", "Guide", "Guide › Install"}
    return Corpus(data, rows)


@pytest.fixture(scope="module")
def faces(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Search]]:
    store = FaissVectorStore(HashEmbeddings(64), path=tmp_path_factory.mktemp("vs"))
    metas = [{k: v for k, v in r.items() if k != "text"} for r in corpus.rows]
    store.add_texts([r["text"] for r in corpus.rows], metas, ids=[str(r["chunk_id"]) for r in corpus.rows])
    # few candidates, so a filter applied after ranking would see none of the notes
    searcher = HybridSearcher(corpus.data_dir, HashEmbeddings(64), config=HybridConfig(candidates=5))

    def vectorstore(query: str, k: int, flt: Any) -> list[str]:
        return [d.page_content for d in store.similarity_search(query, k=k, filter=flt)]

    def hybrid(query: str, k: int, flt: Any) -> list[str]:
        return [h.text for h in searcher.search(query, k=k, filters=flt).hits]

    yield {"vectorstore": vectorstore, "hybrid": hybrid}
    store.close()


@pytest.fixture(params=["vectorstore", "hybrid"])
def face(request: pytest.FixtureRequest, faces: dict[str, Search]) -> Search:
    return faces[request.param]


# (filter, which rows it keeps); "a03.md" and friends are resolved to the absolute source paths
MEMBERSHIP: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"source": {"$glob": "*/notes/*"}}, lambda r: "/notes/" in r["source"]),
    ({"source": {"$glob": "*/docs/*.md"}}, lambda r: True),  # GLOB's * crosses '/'
    ({"source": {"$glob": "*.MD"}}, lambda r: False),  # case-sensitive
    ({"source": "a03.md"}, lambda r: r["source"].endswith("a03.md")),
    ({"source": {"$eq": "b1.md"}}, lambda r: r["source"].endswith("b1.md")),
    ({"source": {"$in": ["a01.md", "b2.md", "/nowhere.md"]}}, lambda r: r["source"].endswith(("a01.md", "b2.md"))),
    ({"source": {"$in": []}}, lambda r: False),
    ({"source": {"$glob": "*/notes/*", "$eq": "b0.md"}}, lambda r: r["source"].endswith("b0.md")),  # ops ANDed
    ({"heading": "Notes"}, lambda r: r["heading"] == "Notes"),
    ({"heading": "Guide › Install"}, lambda r: r["heading"] == "Guide › Install"),
    ({"heading": "Guide"}, lambda r: r["heading"] == "Guide"),  # the whole path, not a part of it
    ({"heading": {"$glob": "Guide › *"}}, lambda r: r["heading"] == "Guide › Install"),
    ({"heading": {"$in": ["", "Guide › Install"]}}, lambda r: r["heading"] == "Guide › Install"),
    ({"heading": {"$in": ["LoRA", "Sampling"]}, "page": 2}, lambda r: r["heading"] == "LoRA" and r["page"] == 2),
    ({"page": None}, lambda r: r["page"] is None),
    ({"page": 1}, lambda r: r["page"] == 1),
    ({"page": 1.0}, lambda r: r["page"] == 1),
    ({"page": {"$in": [1, 3]}}, lambda r: r["page"] in (1, 3)),
    ({"page": {"$glob": "[23]"}}, lambda r: r["page"] in (2, 3)),
    ({"page": "1"}, lambda r: False),  # a string is not the number 1
    ({"page": True}, lambda r: False),  # nor is JSON true
    ({"start": False}, lambda r: False),  # nor is JSON false the number 0
    ({"start": 0, "heading": "Notes"}, lambda r: r["start"] == 0 and r["heading"] == "Notes"),
    ({"chunk_id": {"$in": [1, 2, 3]}}, lambda r: r["chunk_id"] in (1, 2, 3)),
]


def _resolve(flt: Any, corpus: Corpus) -> Any:
    """The filter with each ``xNN.md`` name replaced by that source's absolute path."""
    if isinstance(flt, dict):
        return {k: _resolve(v, corpus) for k, v in flt.items()}
    if isinstance(flt, list):
        return [_resolve(v, corpus) for v in flt]
    if isinstance(flt, str) and flt.endswith(".md") and not flt.startswith(("*", "/")):
        return corpus.source(flt)
    return flt


@pytest.mark.parametrize(("flt", "keep"), MEMBERSHIP, ids=[json.dumps(f) for f, _ in MEMBERSHIP])
def test_a_filter_selects_the_same_chunks_on_both_faces(
    face: Search, corpus: Corpus, flt: dict[str, Any], keep: Callable[[dict[str, Any]], bool]
) -> None:
    assert set(face("LoRA notes quantization", len(corpus.rows), _resolve(flt, corpus))) == corpus.select(keep)


def test_matching_chunks_far_below_the_top_still_give_k_hits(face: Search, corpus: Corpus) -> None:
    notes = corpus.select(lambda r: "/notes/" in r["source"])
    assert not notes & set(face(QUERY, 20, None))  # the notes rank below every LoRA chunk
    hits = face(QUERY, 3, {"source": {"$glob": "*/notes/*"}})
    assert len(hits) == 3 and set(hits) <= notes
    assert set(face(QUERY, 10, {"source": {"$glob": "*/notes/*"}})) == notes  # fewer than k match: all of them
    some = [r["chunk_id"] for r in corpus.rows if r["source"].endswith(("a05.md", "a17.md", "a30.md", "b3.md"))]
    hits = face(QUERY, 2, {"chunk_id": {"$in": some}})
    assert len(hits) == 2 and set(hits) <= corpus.select(lambda r: r["chunk_id"] in some)


BAD: list[Any] = [
    {"source; DROP TABLE chunks": "x"},
    {"source') OR 1=1 --": "x"},
    {"$or": [{"source": "x"}]},
    {"$.source": "x"},
    {"source[0]": "x"},
    {"a..b": 1},
    {"": 1},
    {"source": {"$regex": ".*"}},
    {"source": {"$ne": "x"}},
    {"source": {"$in": "x"}},
    {"source": {"$glob": 3}},
    {"source": ["x"]},
    {"source": {"nested": "dict"}},
    {"source": {"$eq": {"$ne": "x"}}},
    {"source": {"$in": [{"$eq": "x"}]}},
    {"page": {"$in": [[1]]}},
    ["source"],
    "source",
]


@pytest.mark.parametrize("flt", BAD, ids=[json.dumps(f) for f in BAD])
def test_a_bad_filter_is_refused_alike_by_both_faces(faces: dict[str, Search], corpus: Corpus, flt: Any) -> None:
    messages = {}
    for name, search in faces.items():
        with pytest.raises(ValueError) as err:
            search(QUERY, 3, flt)
        messages[name] = str(err.value)
    assert len(set(messages.values())) == 1, messages
    for search in faces.values():  # nothing was dropped or changed
        assert len(search(QUERY, len(corpus.rows), None)) == len(corpus.rows)


@pytest.mark.parametrize("value", ["x' OR 1=1 --", '") OR 1=1 --', "*", "%", "$.source"])
def test_hostile_values_are_only_data(face: Search, value: str) -> None:
    assert face(QUERY, 5, {"source": value}) == []
    assert face(QUERY, 5, {"source": {"$in": [value]}}) == []
    assert face(QUERY, 5, {"heading": {"$glob": value + "' OR 1=1 --"}}) == []


def test_the_hybrid_names_its_fields_when_a_key_is_unknown(faces: dict[str, Search]) -> None:
    # the vector store's metadata is open-ended (a missing key matches nothing); the hybrid's
    # fields are the chunk's, and per-stage scores are results, not something to filter on
    assert faces["vectorstore"](QUERY, 5, {"colour": "red"}) == []
    for key in ("colour", "score", "dense_rank"):
        with pytest.raises(ValueError, match=r"unknown filter key .*'chunk_id', 'end', 'heading', 'page', 'source'"):
            faces["hybrid"](QUERY, 5, {key: 1})
