"""The SQLite catalogue, the data-dir lock and the FAISS index file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text

from saem.errors import StorageBusy
from saem.ingest.types import ChunkSpec
from saem.retrieval._candidates import compile_chunk_filter
from saem.retrieval.lexical import search
from saem.store.catalogue import (
    Catalogue,
    Chunk,
    DataDirLock,
    Source,
    copy_source,
    get_meta,
    remove_source,
    replace_source,
)
from saem.store.index import INDEX_FILE, META_FILE, IndexMeta, VectorIndex, open_index, read_meta
from saem.text.analyzer import to_fts_text

pytestmark = pytest.mark.unit


def fields(path: str, model: str = "m", sha: str = "0" * 64) -> dict[str, object]:
    return {
        "path": path,
        "size": 1,
        "mtime_ns": 1,
        "sha256": sha,
        "embed_model": model,
        "chunker": "1:256:32",
        "updated_at": 0.0,
        "run_id": None,
        "n_chunks": 2,
        "mime": "text/plain",
        "title": None,
    }


def vecs(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


CHUNKS = [ChunkSpec("토크나이저는 텍스트를 나눕니다", 0, 15), ChunkSpec("top-p sampling keeps mass", 16, 41)]
FTS = [to_fts_text(c.text) for c in CHUNKS]  # what the pipeline writes


@pytest.fixture
def cat(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Catalogue.open(tmp_path / "saem.db")
    yield c
    c.close()


def test_open_is_idempotent_and_sets_pragmas(tmp_path: Path) -> None:
    first = Catalogue.open(tmp_path / "saem.db")
    first.close()
    cat = Catalogue.open(tmp_path / "saem.db", busy_timeout_s=7)
    with cat.read() as s:
        conn = s.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
        assert get_meta(s, "generation") == "0"
    assert cat.integrity_check() == "ok"
    cat.close()


def test_writes_keep_fts_and_generation_in_step(cat: Catalogue) -> None:
    with cat.write() as s:
        removed, ids = replace_source(s, fields("/a.txt"), CHUNKS, FTS, vecs(2))
    assert removed == [] and len(ids) == 2
    with cat.read() as s:
        assert search(s, "토크나이저가", 5)[0][0] == ids[0]
        assert [i for i, _ in search(s, "Sampling", 5)] == [ids[1]]
        assert get_meta(s, "generation") == "1"
    with cat.write() as s:
        sid = s.scalar(select(Source.id))
        assert sid is not None
        removed, new_ids = replace_source(s, fields("/a.txt"), CHUNKS[:1], FTS[:1], vecs(1), source_id=sid)
        copied, copied_vecs = copy_source(s, sid, fields("/b.txt"))
    assert removed == ids and not set(new_ids) & set(ids) and len(copied) == 1
    assert copied_vecs is not None and np.allclose(copied_vecs[0], vecs(1)[0])
    with cat.read() as s:
        assert sorted(i for i, _ in search(s, "토크나이저", 5)) == sorted(new_ids + copied)
        assert search(s, "sampling", 5) == []
    with cat.write() as s:
        assert remove_source(s, sid) == new_ids
    with cat.read() as s:
        assert [i for i, _ in search(s, "토크나이저", 5)] == copied
        assert s.scalar(text("SELECT count(*) FROM chunks_fts")) == 1
        assert get_meta(s, "generation") == "4"


def test_a_failed_write_leaves_nothing(cat: Catalogue) -> None:
    with pytest.raises(ValueError), cat.write() as s:
        replace_source(s, fields("/a.txt"), CHUNKS, FTS, vecs(2))
        raise ValueError("crash after the inserts")
    with cat.read() as s:
        assert s.scalar(select(func.count(Chunk.id))) == 0
        assert s.scalar(text("SELECT count(*) FROM chunks_fts")) == 0
        assert get_meta(s, "generation") == "0"


def test_writers_queue_and_readers_are_not_blocked(tmp_path: Path) -> None:
    cat = Catalogue.open(tmp_path / "saem.db")
    other = Catalogue.open(tmp_path / "saem.db", busy_timeout_s=0.2)
    with cat.write() as s:
        replace_source(s, fields("/a.txt"), CHUNKS, FTS, vecs(2))
    with cat.write() as s:  # BEGIN IMMEDIATE: this transaction holds the write lock from its start
        s.execute(text("UPDATE meta SET value = '99' WHERE key = 'generation'"))
        with other.read() as r:  # WAL: the reader sees the last commit, without waiting
            assert get_meta(r, "generation") == "1"
            assert len(search(r, "sampling", 3)) == 1
        with pytest.raises(StorageBusy), other.write() as w:
            w.execute(text("UPDATE meta SET value = '5' WHERE key = 'schema'"))
    with other.read() as r:
        assert get_meta(r, "generation") == "99"
    other.close()
    cat.close()


def test_data_dir_lock(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path)
    lock.acquire()
    with pytest.raises(StorageBusy, match=r"pid \d+"):
        DataDirLock(tmp_path).acquire()
    threading.Timer(0.3, lock.release).start()
    start = time.monotonic()
    waiter = DataDirLock(tmp_path)
    waiter.acquire(timeout=5)  # waits for the holder instead of failing
    assert 0.2 < time.monotonic() - start < 5
    waiter.release()
    with DataDirLock(tmp_path):
        pass


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    code = (
        "import sys, time; from saem.store.catalogue import DataDirLock; "
        f"DataDirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(StorageBusy):
            DataDirLock(tmp_path).acquire()
        proc.kill()
        proc.wait()
        lock = DataDirLock(tmp_path)
        lock.acquire(timeout=5)
        lock.release()
    finally:
        proc.kill()


def test_index_save_is_atomic_and_verified(cat: Catalogue, tmp_path: Path) -> None:
    with cat.write() as s:
        _, ids = replace_source(s, fields("/a.txt", model="m"), CHUNKS, FTS, vecs(2))
        s.execute(text("INSERT INTO meta(key, value) VALUES ('embed_model', 'm'), ('dim', '4')"))
    data = tmp_path / "data"
    index = open_index(data, cat)
    assert index is not None and index.ntotal == 2
    assert read_meta(data) == IndexMeta(count=2, model="m", dim=4, generation=1)
    assert sorted(p.name for p in data.iterdir()) == [INDEX_FILE, META_FILE]  # no temp files left
    assert index.search(vecs(2)[1], k=1)[0][0] == ids[1]

    (data / INDEX_FILE).write_bytes(b"garbage")  # a corrupt file is rebuilt, not trusted
    assert open_index(data, cat).ntotal == 2  # type: ignore[union-attr]
    (data / META_FILE).write_text(json.dumps({"count": 2, "model": "m", "dim": 4, "generation": 0}))
    assert open_index(data, cat, persist=False).ntotal == 2  # type: ignore[union-attr]
    assert read_meta(data) == IndexMeta(2, "m", 4, 0)  # persist=False: the file was left alone


def test_empty_catalogue_has_no_index(cat: Catalogue, tmp_path: Path) -> None:
    assert open_index(tmp_path, cat) is None
    empty = VectorIndex.empty(8)
    assert empty.search(np.ones(8), k=3) == []


def test_page_and_heading_filters_read_an_index_and_old_databases_get_it(tmp_path: Path) -> None:
    db = tmp_path / "saem.db"
    Catalogue.open(db).close()
    with sqlite3.connect(db) as conn:  # a database made before the indexes existed
        conn.execute("DROP INDEX ix_chunks_page")
        conn.execute("DROP INDEX ix_chunks_heading")
    cat = Catalogue.open(db)
    try:
        with cat.read() as s:
            names = set(s.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'")).scalars())
            assert {"ix_chunks_page", "ix_chunks_heading"} <= names
            for filters in ({"page": 3}, {"heading": {"$glob": "*Layer*"}}):
                where = compile_chunk_filter(filters).chunks
                assert where is not None
                compiled = select(Chunk.id).where(where).compile(dialect=s.get_bind().dialect)
                params = tuple(compiled.params[n] for n in compiled.positiontup or ())
                rows = s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
                plan = " ".join(str(r[3]) for r in rows)
                assert "COVERING INDEX" in plan, (filters, plan)
    finally:
        cat.close()
