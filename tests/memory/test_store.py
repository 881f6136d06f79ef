"""SQLiteStore: the official BaseStore suites, namespaces, and literal prefix scans."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

from saem.memory import MemoryDB, SQLiteStore
from saem.memory.store import like_prefix

pytestmark = pytest.mark.unit


class TestSQLiteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(tmp_path / "saem.db", namespace="user:a")

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", "바".encode(), b"\x00\xffbuzz"


class TestSQLiteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(tmp_path / "saem.db", namespace="user:a")

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", "바".encode(), b"\x00\xffbuzz"


@pytest.fixture
def db(tmp_path: Path) -> MemoryDB:
    return MemoryDB.open(tmp_path / "saem.db")


def test_namespaces_are_separate_key_spaces(db: MemoryDB) -> None:
    alice, bob = SQLiteStore(db, namespace="user:alice"), SQLiteStore(db, namespace="user:bob")
    alice.mset([("k", b"a"), ("only-alice", b"1")])
    bob.mset([("k", b"b")])
    assert alice.mget(["k", "only-alice"]) == [b"a", b"1"]
    assert bob.mget(["k", "only-alice"]) == [b"b", None]
    bob.mdelete(["only-alice", "k"])
    assert alice.mget(["k", "only-alice"]) == [b"a", b"1"]
    assert list(bob.yield_keys()) == []
    assert list(alice.yield_keys()) == ["k", "only-alice"]


def test_prefix_is_literal_and_case_sensitive(db: MemoryDB) -> None:
    store = SQLiteStore(db)
    keys = ["a%b", "a%bc", "axb", "a_b", "acb", "A_b", "a\\b", "a\\bc", "ab", "세션/1", "세션/2", "세션x"]
    store.mset([(k, b"v") for k in keys])
    assert list(store.yield_keys(prefix="a%")) == ["a%b", "a%bc"]
    assert list(store.yield_keys(prefix="a_")) == ["a_b"]
    assert list(store.yield_keys(prefix="a\\")) == ["a\\b", "a\\bc"]
    assert list(store.yield_keys(prefix="A")) == ["A_b"]
    assert list(store.yield_keys(prefix="세션/")) == ["세션/1", "세션/2"]
    assert list(store.yield_keys(prefix="")) == sorted(keys)


def test_like_prefix_escapes_wildcards() -> None:
    assert like_prefix("50%_off\\") == "50\\%\\_off\\\\%"


def test_yield_keys_pages_through_many_keys_in_order(db: MemoryDB) -> None:
    store = SQLiteStore(db)
    keys = [f"k{i:05d}" for i in range(1203)]  # more than two pages
    store.mset([(k, b"") for k in reversed(keys)])
    assert list(store.yield_keys()) == keys
    assert list(store.yield_keys(prefix="k011")) == keys[1100:1200]
    assert store.mget(keys)[-1] == b""


def test_repeated_key_in_one_mset_keeps_the_last_value(db: MemoryDB) -> None:
    store = SQLiteStore(db)
    store.mset([("k", b"1"), ("k", b"2")])
    assert store.mget(["k"]) == [b"2"]


def test_values_must_be_bytes(db: MemoryDB) -> None:
    store = SQLiteStore(db)
    with pytest.raises(TypeError, match="bytes"):
        store.mset([("k", "text")])  # type: ignore[list-item]
    assert store.mget(["k"]) == [None]


def test_data_survives_a_new_handle(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "saem.db", namespace="n").mset([("k", b"v")])
    assert SQLiteStore(f"sqlite:///{tmp_path / 'saem.db'}", namespace="n").mget(["k"]) == [b"v"]


def test_in_memory_url_works_for_throwaway_use() -> None:
    store = SQLiteStore("sqlite://")
    store.mset([("k", b"v")])
    assert store.mget(["k"]) == [b"v"]
