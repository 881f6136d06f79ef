"""The ingest job against the real loaders and chunker, with a deterministic fake embedder."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from sqlalchemy import text as text_sql

from saem.app.saem import Saem
from saem.errors import StorageBusy
from saem.ingest.pipeline import ingest, stats
from saem.retrieval.hybrid import HybridConfig, HybridSearcher
from saem.settings import Settings
from saem.store.catalogue import Catalogue, DataDirLock
from saem.store.index import INDEX_FILE, META_FILE, load_index_file, open_index, read_meta

KO = (
    "# 토크나이저\n\n토크나이저는 텍스트를 토큰으로 나눕니다. 한국어는 교착어라서 조사가 붙습니다. "
    "형태소 분석기는 어절을 형태소로 나눕니다. 서브워드 토크나이저는 자주 나오는 조각을 합칩니다.\n\n"
    "## 어휘\n\n어휘 크기는 모델의 임베딩 행렬 크기를 정합니다. 어휘가 크면 시퀀스가 짧아집니다. "
    "하지만 드문 토큰은 잘 학습되지 않습니다. 바이트 수준 BPE는 알 수 없는 문자가 없습니다.\n"
)
EN = (
    "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose probability mass exceeds p. "
    "Temperature rescales the logits before the softmax. A low temperature makes answers repeatable. "
    "Top-k keeps only the k most likely tokens.\n\n## Penalties\n\nA repetition penalty lowers the "
    "logits of tokens that already appeared. It helps small models avoid loops. Too much of it hurts.\n"
)


class CountingEmbedder(Embeddings):
    """A deterministic fake that counts the texts it embeds and can be told to fail."""

    def __init__(self, size: int = 32, model_id: str = "fake-32") -> None:
        self.inner = DeterministicFakeEmbedding(size=size)
        self.model_id = model_id
        self.texts: list[str] = []
        self.fail = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.fail:
            raise RuntimeError("model exploded")
        self.texts.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "ko.md").write_text(KO, encoding="utf-8")
    (root / "en.md").write_text(EN, encoding="utf-8")
    (root / "sub" / "notes.txt").write_text(KO.replace("#", "") + EN.replace("#", ""), encoding="utf-8")
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", chunk_tokens=40, chunk_overlap=8)


@pytest.fixture
def emb() -> CountingEmbedder:
    return CountingEmbedder()


def run(settings: Settings, root: Path, emb: Embeddings, **kw):  # type: ignore[no-untyped-def]
    return ingest(settings, [root], embedder=emb, **kw)


def chunk_rows(settings: Settings) -> dict[str, list[tuple[int, str]]]:
    """path → [(chunk id, text)] in order."""
    with sqlite3.connect(settings.db_path) as conn:
        rows = conn.execute(
            "SELECT s.path, c.id, c.text FROM chunks c JOIN sources s ON s.id = c.source_id ORDER BY s.path, c.ord"
        ).fetchall()
    out: dict[str, list[tuple[int, str]]] = {}
    for path, cid, text in rows:
        out.setdefault(path, []).append((cid, text))
    return out


def check_consistent(settings: Settings) -> None:
    cat = Catalogue.open(settings.db_path)
    try:
        assert cat.integrity_check() == "ok"
        index = load_index_file(settings.data_dir)
        with sqlite3.connect(settings.db_path) as conn:
            ids = {r[0] for r in conn.execute("SELECT id FROM chunks")}
            fts = {r[0] for r in conn.execute("SELECT rowid FROM chunks_fts")}
            orphans = conn.execute("SELECT count(*) FROM chunks WHERE source_id NOT IN (SELECT id FROM sources)")
            assert orphans.fetchone()[0] == 0
        assert fts == ids
        assert index is not None and set(index.ids().tolist()) == ids
        meta = read_meta(settings.data_dir)
        assert meta is not None and meta.count == len(ids)
    finally:
        cat.close()


@pytest.mark.unit
def test_first_ingest_then_rerun_writes_nothing(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    first = run(settings, docs, emb)
    assert (first.added, first.failed, first.skipped) == (3, 0, 0)
    assert first.chunks_written == sum(len(v) for v in chunk_rows(settings).values()) > 3
    check_consistent(settings)
    before = chunk_rows(settings)
    generation = stats(settings).generation
    index_mtime = (settings.data_dir / INDEX_FILE).stat().st_mtime_ns
    emb.texts.clear()

    again = run(settings, docs, emb)
    assert (again.unchanged, again.added, again.updated, again.chunks_written) == (3, 0, 0, 0)
    assert emb.texts == []
    assert chunk_rows(settings) == before
    assert stats(settings).generation == generation
    assert (settings.data_dir / INDEX_FILE).stat().st_mtime_ns == index_mtime


@pytest.mark.unit
def test_touched_file_is_hashed_not_reembedded(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    emb.texts.clear()
    os.utime(docs / "en.md", ns=(1, 1))
    report = run(settings, docs, emb)
    assert report.unchanged == 3 and report.chunks_written == 0 and emb.texts == []
    # the new mtime was recorded: the next run does not even hash it
    assert run(settings, docs, emb).unchanged == 3


@pytest.mark.unit
def test_changed_file_replaces_exactly_its_own_chunks(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    before = chunk_rows(settings)
    emb.texts.clear()
    (docs / "en.md").write_text(EN.replace("Too much of it hurts.", "Too much of it makes text odd."), encoding="utf-8")
    report = run(settings, docs, emb)
    assert (report.updated, report.unchanged) == (1, 2)
    after = chunk_rows(settings)
    en = str(docs / "en.md")
    for path in before:
        if path != en:
            assert after[path] == before[path]  # same ids, same texts
    assert any("makes text odd" in t for _, t in after[en])
    assert not {cid for cid, _ in before[en]} & {cid for cid, _ in after[en]}
    # unchanged chunk texts kept their stored vectors: only the edited chunk(s) were embedded
    assert 0 < report.chunks_embedded < report.chunks_written
    assert len(emb.texts) == report.chunks_embedded
    check_consistent(settings)


@pytest.mark.unit
def test_rename_counts_once_and_is_not_reembedded(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    before = chunk_rows(settings)
    emb.texts.clear()
    (docs / "ko.md").rename(docs / "sub" / "korean.md")
    report = run(settings, docs, emb)
    assert (report.renamed, report.added, report.removed, report.chunks_written) == (1, 0, 0, 0)
    assert emb.texts == []
    row = next(r for r in report.files if r.status == "renamed")
    assert row.path == str(docs / "sub" / "korean.md") and str(docs / "ko.md") in row.reason
    assert chunk_rows(settings)[str(docs / "sub" / "korean.md")] == before[str(docs / "ko.md")]
    check_consistent(settings)


@pytest.mark.unit
def test_deleted_file_is_pruned_unless_no_prune(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    (docs / "en.md").unlink()
    kept = run(settings, docs, emb, prune=False)
    assert kept.removed == 0 and str(docs / "en.md") in chunk_rows(settings)
    pruned = run(settings, docs, emb)
    assert pruned.removed == 1 and str(docs / "en.md") not in chunk_rows(settings)
    check_consistent(settings)


@pytest.mark.unit
def test_prune_is_scoped_to_the_given_roots(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    report = ingest(settings, [docs / "sub"], embedder=emb)
    assert report.removed == 0 and report.unchanged == 1
    assert len(chunk_rows(settings)) == 3


@pytest.mark.unit
def test_copy_reuses_vectors(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    emb.texts.clear()
    shutil.copy(docs / "en.md", docs / "en-copy.md")
    report = run(settings, docs, emb)
    assert report.added == 1 and emb.texts == []
    rows = chunk_rows(settings)
    assert [t for _, t in rows[str(docs / "en-copy.md")]] == [t for _, t in rows[str(docs / "en.md")]]
    check_consistent(settings)


@pytest.mark.unit
def test_embedder_or_chunker_change_reembeds_with_message(settings: Settings, docs: Path) -> None:
    run(settings, docs, CountingEmbedder(model_id="fake-a"))
    other = CountingEmbedder(size=16, model_id="fake-b")
    report = run(settings, docs, other)
    assert report.updated == 3 and any("embedder changed" in m for m in report.messages)
    assert all("embedder changed" in r.reason for r in report.files)
    s = stats(settings)
    assert (s.embed_model, s.dim, s.index_vectors, s.stale_chunks) == ("fake-b", 16, s.chunks, 0)

    smaller = settings.with_overrides(chunk_tokens=24)
    report = run(smaller, docs, other)
    assert report.updated == 3 and any("chunker settings changed" in m for m in report.messages)
    check_consistent(smaller)


@pytest.mark.unit
def test_dry_run_writes_nothing(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    report = run(settings, docs, emb, dry_run=True)
    assert report.dry_run and report.added == 3 and report.chunks_written == 0
    assert not settings.data_dir.exists() and emb.texts == []

    run(settings, docs, emb)
    (docs / "en.md").unlink()
    (docs / "ko.md").write_text(KO + "\n추가 문장입니다.\n", encoding="utf-8")
    snapshot = files_of(settings.data_dir)
    report = run(settings, docs, emb, dry_run=True)
    assert (report.removed, report.updated, report.unchanged) == (1, 1, 1)
    assert files_of(settings.data_dir) == snapshot


def files_of(folder: Path) -> dict[str, bytes]:
    # a read-only SQLite reader may (re)create the -shm/-wal side files: they hold no data
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


@pytest.mark.unit
def test_second_ingest_is_refused_or_waits(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    try:
        with pytest.raises(StorageBusy, match="another ingest"):
            run(settings, docs, emb)
        with pytest.raises(StorageBusy):
            run(settings, docs, emb, lock_timeout=0.3)
    finally:
        lock.release()
    assert run(settings, docs, emb).added == 3


@pytest.mark.unit
def test_bad_input_is_reported_and_the_rest_ingests(
    settings: Settings, docs: Path, tmp_path: Path, emb: CountingEmbedder
) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text(EN, encoding="utf-8")
    (docs / "link.md").symlink_to(outside)
    (docs / "inside-link.md").symlink_to(docs / "en.md")
    os.mkfifo(docs / "pipe.md")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (docs / "empty.md").write_bytes(b"")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (docs / ".hidden.md").write_text(EN, encoding="utf-8")
    report = run(settings, docs, emb)
    reasons = {Path(r.path).name: (r.status, r.reason) for r in report.problems()}
    assert reasons["link.md"][0] == "skipped" and "outside the root" in reasons["link.md"][1]
    assert reasons["pipe.md"] == ("skipped", "not a regular file (FIFO)")
    assert "unsupported" in reasons["image.png"][1]
    assert reasons["empty.md"][0] == "skipped" and reasons["binary.txt"][0] in ("skipped", "failed")
    assert ".hidden.md" not in reasons
    assert report.added == 4  # ko, en, sub/notes, inside-link (a copy of en)
    check_consistent(settings)


@pytest.mark.unit
def test_loader_crash_and_embedder_failure_do_not_stop_the_job(
    settings: Settings, docs: Path, emb: CountingEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saem.ingest import loaders

    real = loaders.load_file

    def flaky(path: Path, *, max_bytes: int):  # type: ignore[no-untyped-def]
        if path.name == "en.md":
            raise ZeroDivisionError("loader bug")
        return real(path, max_bytes=max_bytes)

    monkeypatch.setattr(loaders, "load_file", flaky)
    report = run(settings, docs, emb)
    assert (report.added, report.failed) == (2, 1)
    assert "ZeroDivisionError" in report.problems()[0].reason
    monkeypatch.setattr(loaders, "load_file", real)

    (docs / "ko.md").write_text(KO + "\n새 문단.\n", encoding="utf-8")
    emb.fail = True
    report = run(settings, docs, emb)
    assert report.failed == 2 and all("embedding failed" in r.reason for r in report.problems())
    assert str(docs / "ko.md") in chunk_rows(settings)  # the old version is kept
    emb.fail = False
    report = run(settings, docs, emb)
    assert (report.added, report.updated, report.failed) == (1, 1, 0)
    check_consistent(settings)


@pytest.mark.unit
def test_unreadable_new_version_drops_old_chunks(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    (docs / "en.md").write_bytes(b"")
    report = run(settings, docs, emb)
    row = report.problems()[0]
    assert row.status == "skipped" and "previous chunks were removed" in row.reason
    assert str(docs / "en.md") not in chunk_rows(settings)
    check_consistent(settings)


@pytest.mark.unit
def test_include_exclude_globs(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    report = run(settings, docs, emb, include=["*.md"], exclude=["ko*"])
    assert [Path(r.path).name for r in report.files if r.status == "added"] == ["en.md"]


@pytest.mark.unit
def test_index_is_rebuilt_when_missing_or_stale(settings: Settings, docs: Path, emb: CountingEmbedder) -> None:
    run(settings, docs, emb)
    n = stats(settings).chunks
    (settings.data_dir / INDEX_FILE).unlink()
    assert stats(settings).index_fresh is False
    run(settings, docs, emb)  # nothing changed, but the index is repaired
    check_consistent(settings)
    (settings.data_dir / META_FILE).write_text('{"count": 1, "model": "x", "dim": 3, "generation": 0}')
    cat = Catalogue.open(settings.db_path)
    index = open_index(settings.data_dir, cat)
    cat.close()
    assert index is not None and index.ntotal == n
    check_consistent(settings)
    hits = index.search(np.asarray(emb.embed_query(KO[:50])), k=3)
    assert len(hits) == 3


@pytest.mark.unit
def test_saem_facade_ingest_and_stats(tmp_path: Path, docs: Path) -> None:
    app = Saem(data_dir=tmp_path / "facade", chunk_tokens=40, chunk_overlap=8, embedder=CountingEmbedder())
    assert app.stats().sources == 0
    seen = []
    report = app.ingest(docs, progress=seen.append)
    assert report.added == 3
    s = app.stats()
    assert (s.sources, s.index_vectors, s.embed_model, s.dim) == (3, s.chunks, "fake-32", 32)
    assert s.generation == 3 and s.last_run is not None and s.last_run.startswith("ok")
    assert [e.phase for e in seen][:2] == ["scan", "plan"] and seen[-1].phase == "done"
    work = [e for e in seen if e.phase == "work"]
    assert [e.files_done for e in work] == [1, 2, 3] and work[-1].chunks_done == report.chunks_written


# --- with the real default embedder ---------------------------------------------------------


@pytest.fixture(scope="session")
def real_embedder() -> Embeddings:
    from saem.models.embedders import load_embedder

    emb = load_embedder(Settings())
    emb.load()
    return emb


def expected_chunks(settings: Settings, root: Path, emb: Embeddings) -> dict[str, list[str]]:
    """What a from-scratch chunking of every supported file gives, path → chunk texts."""
    from saem.ingest.chunking import chunk_document
    from saem.ingest.loaders import SUPPORTED_SUFFIXES, load_file

    out: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in SUPPORTED_SUFFIXES and not path.name.startswith("."):
            doc = load_file(path, max_bytes=settings.max_file_bytes)
            chunks = chunk_document(
                doc,
                count_tokens=emb.tokenizer_count,  # type: ignore[attr-defined]
                chunk_tokens=settings.chunk_tokens,
                overlap_tokens=settings.chunk_overlap,
            )
            out[str(path)] = [c.text for c in chunks]
    return out


@pytest.mark.integration
def test_sample_corpus_with_the_real_embedder(tmp_path: Path, repo_root: Path, real_embedder: Embeddings) -> None:
    root = tmp_path / "data"
    shutil.copytree(repo_root / "data", root)
    settings = Settings(data_dir=tmp_path / "saem")
    first = ingest(settings, [root], embedder=real_embedder)
    assert first.failed == 0 and first.added >= 10, first.problems()
    texts = {p: [t for _, t in rows] for p, rows in chunk_rows(settings).items()}
    assert texts == expected_chunks(settings, root, real_embedder)
    check_consistent(settings)
    s = stats(settings)
    assert (s.embed_model, s.dim) == (real_embedder.model_id, real_embedder.dimension)  # type: ignore[attr-defined]

    again = ingest(settings, [root], embedder=real_embedder)
    assert again.chunks_written == 0 and again.unchanged == first.added and not again.changed
    assert stats(settings).generation == s.generation

    ko = sorted(root.glob("ko_*.md"))[0]
    ko.write_text(
        ko.read_text(encoding="utf-8") + "\n\n## 덧붙임\n\n새로 추가한 문단입니다. 검색에 나와야 합니다.\n",
        encoding="utf-8",
    )
    en = sorted(root.glob("en_*.txt"))[0]
    en.rename(root / "renamed.txt")
    gone = sorted(root.glob("en_*.html"))[0]
    gone.unlink()
    report = ingest(settings, [root], embedder=real_embedder)
    assert (report.updated, report.renamed, report.removed, report.added, report.failed) == (1, 1, 1, 0, 0)
    texts = {p: [t for _, t in rows] for p, rows in chunk_rows(settings).items()}
    assert texts == expected_chunks(settings, root, real_embedder)
    check_consistent(settings)

    cat = Catalogue.open(settings.db_path)
    index = open_index(settings.data_dir, cat)
    from saem.retrieval.lexical import search

    with cat.read() as session:
        lexical = search(session, "새로 추가한 문단", 3)
        added_id = session.execute(text_sql("SELECT id FROM chunks WHERE text LIKE '%새로 추가한 문단%'")).scalar_one()
    cat.close()
    assert lexical and lexical[0][0] == added_id
    assert index is not None
    query = real_embedder.embed_query("새로 추가한 문단입니다. 검색에 나와야 합니다.")
    assert added_id in [i for i, _ in index.search(np.asarray(query), k=3)]


@pytest.mark.unit
def test_generated_copy_folders_are_not_entered_and_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "_sources" / "library").mkdir(parents=True)
    (root / "library").mkdir()
    (root / "library" / "functools.html").write_text(
        "<html><body><h1>functools</h1><p>The lru_cache decorator memoizes calls.</p></body></html>",
        encoding="utf-8",
    )
    (root / "_sources" / "library" / "functools.rst.txt").write_text("The lru_cache decorator memoizes.\n")
    app = Saem(data_dir=tmp_path / "dd", embedder=CountingEmbedder())
    report = app.ingest(root)
    assert [Path(r.path).name for r in report.files if r.status == "added"] == ["functools.html"]
    skipped = [r for r in report.files if r.status == "skipped"]
    assert len(skipped) == 1 and skipped[0].path.endswith("_sources") and "ingest_skip_dirs" in skipped[0].reason
    # named as a root, or with the setting emptied, the folder is ingested
    assert app.ingest(root / "_sources").chunks_written == 1
    other = Saem(data_dir=tmp_path / "dd2", embedder=CountingEmbedder(), ingest_skip_dirs=[])
    assert sorted(Path(r.path).name for r in other.ingest(root).files if r.status == "added") == [
        "functools.html",
        "functools.rst.txt",
    ]


CURVES_CHUNK = "## Options\n\nDrag the points to reshape the tone response of the image."


@pytest.mark.unit
def test_a_chunk_is_found_by_its_headings_as_well_as_its_text(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "curves.md").write_text(
        "# 곡선 도구\n\n## Options\n\nDrag the points to reshape the tone response of the image.\n",
        encoding="utf-8",
    )
    app = Saem(data_dir=tmp_path / "dd", embedder=CountingEmbedder())
    app.ingest(root)
    lexical = HybridSearcher(app.settings.data_dir, app.embedder, config=HybridConfig(dense_weight=0.0))
    # "곡선" is only in the chunk's heading; "reshaping tones" only in other forms in its text
    assert CURVES_CHUNK in [h.text for h in lexical.search("곡선 도구", k=3).hits]
    assert [h.text for h in lexical.search("reshaping tones", k=3).hits] == [CURVES_CHUNK]
    assert "곡선" not in CURVES_CHUNK  # the stored text, what the model reads, is the chunk's own


SPHINX_PAGE = """<html><body><div class="sphinxsidebar">Table of Contents</div><div class="body">
<h1>functools — Higher-order functions<a class="headerlink" href="#x">¶</a></h1>
<p>The functools module is for higher-order functions.</p>
<dl class="py function"><dt class="sig sig-object py" id="functools.lru_cache">
<span class="sig-prename descclassname">functools.</span><span class="sig-name descname">lru_cache</span>
(<em class="sig-param">maxsize=128</em>, <em class="sig-param">typed=False</em>)</dt>
<dd><p>Decorator to wrap a function with a memoizing callable that saves up to the maxsize most recent
calls.</p></dd></dl>
<dl class="py function"><dt class="sig sig-object py" id="functools.reduce">
<span class="sig-prename descclassname">functools.</span><span class="sig-name descname">reduce</span>
(<em>function</em>, <em>iterable</em>)</dt><dd><p>Apply function of two arguments cumulatively.</p></dd></dl>
</div></body></html>"""


@pytest.mark.unit
def test_an_api_signature_on_a_sphinx_page_is_found_by_its_dotted_name(tmp_path: Path) -> None:
    root = tmp_path / "html" / "library"
    root.mkdir(parents=True)
    (root / "functools.html").write_text(SPHINX_PAGE, encoding="utf-8")
    (root / "other.html").write_text(
        "<html><body><h1>Caches</h1><p>A cache keeps recent results; a function may be cached.</p></body></html>",
        encoding="utf-8",
    )
    app = Saem(data_dir=tmp_path / "dd", embedder=CountingEmbedder(), chunk_tokens=40, chunk_overlap=0)
    app.ingest(tmp_path / "html")
    lexical = HybridSearcher(app.settings.data_dir, app.embedder, config=HybridConfig(dense_weight=0.0))
    for query in ("functools.lru_cache(maxsize=128)", "lru_cache", "What does functools.lru_cache do?"):
        top = lexical.search(query, k=3).hits[0]
        assert top.source.endswith("functools.html") and "lru_cache" in top.text, (query, top.text)
    assert all("¶" not in h.text and "Table of Contents" not in h.text for h in lexical.search("functools", k=9).hits)


@pytest.mark.unit
def test_stats_of_a_data_dir_holding_only_chat_data_is_empty_not_an_error(tmp_path: Path) -> None:
    from saem.store.chat import MemoryDB

    MemoryDB.open(tmp_path / "saem.db").create_schema()  # a chat before any ingest makes the db
    got = stats(Settings.load({"data_dir": tmp_path}, environ={}))
    assert (got.sources, got.chunks, got.index_vectors, got.embed_model) == (0, 0, 0, None)


@pytest.mark.unit
def test_pruned_text_does_not_stay_in_the_database_file(tmp_path: Path, docs: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path / "d"}, environ={})
    secret = docs / "secret.md"
    secret.write_text("# Gone\n\nThe vault code is SENTINEL-PRUNE-0417.\n", encoding="utf-8")
    ingest(settings, [docs], embedder=DeterministicFakeEmbedding(size=16))
    db = settings.db_path
    on_disk = lambda: b"".join(p.read_bytes() for p in (db, db.with_name("saem.db-wal")) if p.exists())  # noqa: E731
    assert b"SENTINEL-PRUNE-0417" in on_disk()
    secret.unlink()
    ingest(settings, [docs], embedder=DeterministicFakeEmbedding(size=16))
    with sqlite3.connect(db) as conn:  # fold the WAL into the file, as any later checkpoint would
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert b"SENTINEL-PRUNE-0417" not in on_disk()


@pytest.mark.unit
def test_ctrl_c_during_embedding_drops_the_files_queued_ahead_and_loses_nothing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saem.ingest import loaders

    root = tmp_path / "many"
    root.mkdir()
    for i in range(300):
        (root / f"n{i:03}.md").write_text(f"메모 {i}번입니다. Note number {i}.\n", encoding="utf-8")
    real = loaders.load_file
    loaded: list[str] = []

    def counting(path: Path, *, max_bytes: int):  # type: ignore[no-untyped-def]
        loaded.append(path.name)
        if len(loaded) > 64:
            time.sleep(0.05)  # the files behind the first batch are slow: only a queue would reach them all
        return real(path, max_bytes=max_bytes)

    class Interrupted(CountingEmbedder):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            raise KeyboardInterrupt

    monkeypatch.setattr(loaders, "load_file", counting)
    small = settings.with_overrides(embed_batch_size=1)  # embedder batches of 64 one-chunk files
    with pytest.raises(KeyboardInterrupt):
        run(small, root, Interrupted())
    # the first batch's 64 files and the one or two being prepared; not the 64 queued behind them
    assert 64 <= len(loaded) <= 80
    monkeypatch.setattr(loaders, "load_file", real)
    report = run(small, root, CountingEmbedder())  # the next run does all of it
    assert (report.added, report.failed) == (300, 0)
    check_consistent(small)
