"""FaissVectorStore: the langchain-tests contract (in memory and on disk) plus saem's own rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from saem.errors import IndexCorrupt, ModelError
from saem.retrieval.vectorstore import DB_FILE, INDEX_FILE, META_FILE, FaissVectorStore
from saem.testing import HashEmbeddings, run_in_threads

pytestmark = pytest.mark.unit


class TestInMemoryContract(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self) -> Iterator[VectorStore]:  # type: ignore[override]
        store = FaissVectorStore(embedding=self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


class TestOnDiskContract(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path: Path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = FaissVectorStore(embedding=self.get_embeddings(), path=tmp_path / "store")
        try:
            yield store
        finally:
            store.close()


TEXTS = [
    "LoRA adapters train on CPU",
    "FAISS flat index inner product",
    "LoRA rank and alpha settings",
    "SQLite WAL mode and busy timeout",
    "LoRA merges into GGUF weights",
]
METAS: list[dict[str, object]] = [
    {"source": "docs/lora.md", "lang": "en", "page": 1, "draft": False},
    {"source": "docs/faiss.md", "lang": "en", "page": 2, "draft": True},
    {"source": "notes/lora.txt", "lang": "ko", "page": 3, "draft": None},
    {"source": "docs/sub/sqlite.md", "lang": "en", "page": 1, "draft": False, "author": {"name": "kim"}},
    {"source": "docs/lora.rst", "lang": "en", "page": 5, "draft": 1},
]
IDS = ["a", "b", "c", "d", "e"]


def _filled(path: Path | None = None) -> FaissVectorStore:
    return FaissVectorStore.from_texts(TEXTS, HashEmbeddings(), METAS, ids=IDS, path=path)


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaissVectorStore]:
    s = _filled(None if request.param == "memory" else tmp_path / "vs")
    yield s
    s.close()


def _ids(docs: list[Document]) -> list[str | None]:
    return [d.id for d in docs]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"lang": "ko"}, {"c"}),
        ({"page": 1}, {"a", "d"}),
        ({"draft": False}, {"a", "d"}),  # JSON false, not the number 0
        ({"draft": True}, {"b"}),  # and not the number 1
        ({"draft": 1}, {"e"}),
        ({"draft": None}, {"c"}),  # explicit null only; a missing key does not match
        ({"author": None}, set()),
        ({"author.name": "kim"}, {"d"}),
        ({"page": {"$in": [2, 3]}}, {"b", "c"}),
        ({"lang": {"$in": []}}, set()),
        ({"source": {"$glob": "docs/*.md"}}, {"a", "b", "d"}),  # GLOB's * crosses '/'
        ({"source": {"$glob": "docs/*.md"}, "page": 1}, {"a", "d"}),
        ({"source": {"$glob": "*lora*"}, "lang": {"$eq": "en"}}, {"a", "e"}),
        ({}, set(IDS)),
    ],
)
def test_filters_select_exactly_the_matching_documents(
    store: FaissVectorStore, flt: dict[str, object], expected: set[str]
) -> None:
    assert set(_ids(store.similarity_search("anything", k=10, filter=flt))) == expected


def test_filter_restricts_faiss_before_ranking(store: FaissVectorStore) -> None:
    # The nearest documents to "lora" are a, c, e; with k=1 a post-filter would return nothing.
    hits = store.similarity_search_with_score("LoRA adapters", k=1, filter={"lang": "ko"})
    assert _ids([d for d, _ in hits]) == ["c"]
    mmr = store.max_marginal_relevance_search("LoRA", k=2, fetch_k=3, filter={"source": {"$glob": "docs/*"}})
    assert set(_ids(mmr)) <= {"a", "b", "d", "e"} and len(mmr) == 2


@pytest.mark.parametrize("value", ["x' OR 1=1 --", '") OR 1=1 --', "*", "%", "$.lang"])
def test_injection_in_values_is_just_data(store: FaissVectorStore, value: str) -> None:
    assert store.similarity_search("LoRA", k=10, filter={"lang": value}) == []
    assert store.similarity_search("LoRA", k=10, filter={"lang": {"$in": [value]}}) == []
    assert len(store.get_by_ids(IDS)) == 5


def test_glob_value_is_a_pattern_not_sql(store: FaissVectorStore) -> None:
    assert store.similarity_search("LoRA", k=10, filter={"source": {"$glob": "x' OR 1=1 --"}}) == []


@pytest.mark.parametrize(
    "flt",
    [
        {"lang') OR 1=1 --": "en"},
        {"$.lang": "en"},
        {"lang[0]": "en"},
        {"a b": 1},
        {"": 1},
        {"$and": [{"lang": "en"}]},
        {"a..b": 1},
        {"lang": {"$regex": "e.*"}},
        {"lang": {"$in": "en"}},
        {"source": {"$glob": 3}},
        {"lang": ["en"]},
        {"lang": {"nested": "dict"}},
    ],
)
def test_bad_filters_raise_value_error(store: FaissVectorStore, flt: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        store.similarity_search("LoRA", k=3, filter=flt)


def test_empty_store_returns_nothing(tmp_path: Path) -> None:
    for path in (None, tmp_path / "empty"):
        with FaissVectorStore(embedding=HashEmbeddings(), path=path) as store:
            assert store.similarity_search("LoRA") == []
            assert store.similarity_search("LoRA", filter={"lang": "en"}) == []
            assert store.max_marginal_relevance_search("LoRA") == []
            assert store.similarity_search_with_relevance_scores("LoRA") == []
            assert store.get_by_ids(["a"]) == []


def test_upsert_delete_and_metadata_round_trip(store: FaissVectorStore) -> None:
    meta = {"source": "docs/new.md", "nested": {"list": [1, "둘"], "none": None}, "f": 0.5}
    assert store.add_documents([Document("새 문서 LoRA", metadata=meta)], ids=["a"]) == ["a"]
    store.delete(["b", "missing"])
    assert store.get_by_ids(["b", "a", "zzz"]) == [Document(id="a", page_content="새 문서 LoRA", metadata=meta)]
    assert len(store.similarity_search("x", k=10)) == 4
    # a repeated id in one batch: the last one wins
    store.add_texts(["one", "two"], ids=["dup", "dup"])
    assert [d.page_content for d in store.get_by_ids(["dup"])] == ["two"]
    assert len(store.similarity_search("x", k=10)) == 5


def test_scores_are_cosine_best_first(store: FaissVectorStore) -> None:
    hits = store.similarity_search_with_score("LoRA adapters train on CPU", k=5)
    assert hits[0][0].id == "a" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    rel = store.similarity_search_with_relevance_scores("LoRA adapters train on CPU", k=5)
    assert all(0.0 <= s <= 1.0 for _, s in rel)


def test_bad_input_is_refused(store: FaissVectorStore) -> None:
    with pytest.raises(ValueError, match="JSON"):
        store.add_texts(["x"], [{"when": object()}])
    with pytest.raises(ValueError, match="JSON"):
        store.add_texts(["x"], [{"nan": float("nan")}])
    with pytest.raises(TypeError, match="filters"):
        store.similarity_search("x", filters={"lang": "en"})
    with pytest.raises(ValueError):
        store.delete(None)
    assert len(store.similarity_search("x", k=10)) == 5


def test_reopen_gives_the_same_results(tmp_path: Path) -> None:
    folder = tmp_path / "vs"
    with _filled(folder) as store:
        before = store.similarity_search_with_score("LoRA weights", k=5, filter={"lang": "en"})
    assert (folder / INDEX_FILE).is_file() and (folder / DB_FILE).is_file()
    with FaissVectorStore(embedding=HashEmbeddings(), path=folder) as again, _filled() as fresh:
        assert again.similarity_search_with_score("LoRA weights", k=5, filter={"lang": "en"}) == before
        assert again.get_by_ids(IDS) == fresh.get_by_ids(IDS)


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage", "stale-sidecar", "no-sidecar"])
def test_damaged_faiss_file_is_rebuilt_from_sqlite(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "vs"
    with _filled(folder) as store:
        before = store.similarity_search_with_score("LoRA", k=5)
    index, meta = folder / INDEX_FILE, folder / META_FILE
    if damage == "delete":
        index.unlink()
    elif damage == "truncate":
        index.write_bytes(index.read_bytes()[:40])
    elif damage == "garbage":
        index.write_bytes(b"\x00" * 100)
    elif damage == "stale-sidecar":
        # the index of an older state: one vector fewer, and a sidecar that vouches for it
        with FaissVectorStore(embedding=HashEmbeddings(), path=tmp_path / "old") as old:
            old.add_texts(TEXTS[:4], METAS[:4], ids=IDS[:4])
        (tmp_path / "old" / INDEX_FILE).replace(index)
        (tmp_path / "old" / META_FILE).replace(meta)
    else:
        meta.unlink()
    with FaissVectorStore(embedding=HashEmbeddings(), path=folder) as store:
        assert store.similarity_search_with_score("LoRA", k=5) == before
    raw = json.loads(meta.read_text())
    assert raw["count"] == 5 and raw["model"] == "fake:hash-64"


def test_other_handles_see_writes(tmp_path: Path) -> None:
    folder = tmp_path / "vs"
    with _filled(folder) as writer, FaissVectorStore(embedding=HashEmbeddings(), path=folder) as reader:
        assert len(reader.similarity_search("x", k=10)) == 5
        writer.delete(["a", "b"])
        writer.add_texts(["fresh LoRA text"], ids=["f"])
        assert set(_ids(reader.similarity_search("x", k=10))) == {"c", "d", "e", "f"}
        reader.add_texts(["from the reader"], ids=["g"])
        assert "g" in _ids(writer.similarity_search("reader", k=1))


def test_a_database_that_is_not_sqlite_is_index_corrupt(tmp_path: Path) -> None:
    (tmp_path / "vs").mkdir()
    (tmp_path / "vs" / DB_FILE).write_bytes(b"not a database, just bytes" * 200)
    with pytest.raises(IndexCorrupt, match="not a readable store"):
        FaissVectorStore(embedding=HashEmbeddings(), path=tmp_path / "vs")


def test_another_embedding_model_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "vs"
    _filled(folder).close()
    with pytest.raises(ModelError, match="fake:hash-64"):
        FaissVectorStore(embedding=HashEmbeddings(32), path=folder)


def test_a_dimension_change_under_the_same_model_id_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "vs"
    # a nameless embedder's id carries its dimension ("DeterministicFakeEmbedding/6"); an
    # explicit model_id that stays the same is where the dimension check is the last guard
    with FaissVectorStore(embedding=DeterministicFakeEmbedding(size=6), path=folder, model_id="fake") as store:
        store.add_texts(["a", "b"])
    with FaissVectorStore(embedding=DeterministicFakeEmbedding(size=8), path=folder, model_id="fake") as store:
        with pytest.raises(ModelError, match="8-dimensional"):
            store.similarity_search("a")
        with pytest.raises(ModelError, match="8-dimensional"):
            store.add_texts(["c"])
        assert len(store.similarity_search_by_vector([0.1] * 6, k=10)) == 2


def test_a_nameless_embedder_of_another_dimension_is_another_model(tmp_path: Path) -> None:
    folder = tmp_path / "vs"
    with FaissVectorStore(embedding=DeterministicFakeEmbedding(size=6), path=folder) as store:
        store.add_texts(["a", "b"])
        assert store.model_id == "DeterministicFakeEmbedding/6"
    with pytest.raises(ModelError, match="holds vectors of 'DeterministicFakeEmbedding/6'"):
        FaissVectorStore(embedding=DeterministicFakeEmbedding(size=8), path=folder).similarity_search("a")


def test_an_emptied_store_adopts_a_new_model(tmp_path: Path) -> None:
    folder = tmp_path / "vs"
    with FaissVectorStore(embedding=HashEmbeddings(), path=folder) as store:
        store.add_texts(["x"], ids=["x"])
        store.delete(["x"])
    with FaissVectorStore(embedding=HashEmbeddings(16), path=folder) as store:
        store.add_texts(["LoRA"], ids=["y"])
        assert _ids(store.similarity_search("LoRA", k=3)) == ["y"]


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    store = FaissVectorStore(embedding=HashEmbeddings(), path=tmp_path / "vs")

    def work(n: int) -> None:
        for i in range(10):
            store.add_texts([f"text {n} {i}"], [{"n": n}], ids=[f"{n}-{i}"])
            store.similarity_search("text", k=3, filter={"n": n})

    assert run_in_threads(work, 4) == []
    assert len(store.similarity_search("text", k=100)) == 40
    store.close()
    with FaissVectorStore(embedding=HashEmbeddings(), path=tmp_path / "vs") as again:
        assert len(again.similarity_search("text", k=100)) == 40


async def test_async_from_texts_and_search(tmp_path: Path) -> None:
    store = await FaissVectorStore.afrom_texts(TEXTS, HashEmbeddings(), METAS, ids=IDS, path=tmp_path / "vs")
    docs = await store.asimilarity_search("LoRA", k=2, filter={"lang": "ko"})
    assert _ids(docs) == ["c"]
    mmr = await store.amax_marginal_relevance_search("LoRA", k=2, fetch_k=5)
    assert len(mmr) == 2
    store.close()
