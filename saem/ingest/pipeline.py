"""The ingest job: scan → plan → load, chunk and embed → one write transaction per file → index.

    report = ingest(settings, ["docs/"], embedder=emb)

Contract:

* **Incremental, idempotent.** A file whose size and mtime match its catalogue row is not read.
  Otherwise its sha256 decides: same content → unchanged (the row's mtime is refreshed); new
  content → its chunks, and only its chunks, are replaced. A new path whose content matches a
  source that vanished under the same roots is a *rename*: the row moves, nothing is
  re-embedded. A new file identical to another source copies its chunks and vectors. Sources
  under the given roots whose files are gone are pruned unless ``prune=False``. Running twice
  writes nothing the second time.
* **Settings changes.** Each source records the embedder id and the chunker key (version, size,
  overlap); a source made with others is re-chunked and re-embedded, and the report says why.
  Unchanged chunk texts of an updated file reuse their stored vectors.
* **Crash-safe.** Loading, chunking and embedding happen outside any transaction; each file is
  then written in one short ``BEGIN IMMEDIATE`` transaction (source row, chunks, vectors, FTS5
  rows, generation bump) — a kill leaves every file either fully old or fully new. The FAISS
  file is derived: updated at the end and rebuilt from SQLite whenever it disagrees.
* **One writer.** An exclusive ``DataDirLock``: a second ingest raises ``StorageBusy`` at once
  (or waits ``lock_timeout`` seconds). Readers are not blocked (WAL).
* **Bad input never stops the run.** Each file ends ``skipped`` or ``failed`` with a reason;
  symlinks leading outside their root are not followed, FIFOs/devices/sockets are skipped.
* ``dry_run=True`` plans (reading and hashing files) and writes nothing, not even the data dir.

Not re-entrant: one ``ingest`` per data dir at a time (enforced by the lock).
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from sqlalchemy import func, select, update

from saem.errors import FileRejected
from saem.ingest import planner
from saem.ingest.planner import Job, Plan
from saem.ingest.report import FileResult, FileStatus, IngestProgress, IngestReport, Stats
from saem.ingest.types import CHUNKER_VERSION, ChunkSpec, LoadedDocument
from saem.settings import Settings
from saem.store import index as vindex
from saem.store.catalogue import (
    Catalogue,
    Chunk,
    DataDirLock,
    Run,
    Source,
    copy_source,
    get_meta,
    has_catalogue,
    remove_source,
    replace_source,
    set_meta,
)
from saem.text.analyzer import to_fts_text

__all__ = ["ingest", "stats", "embedder_id", "chunker_key"]

ProgressFn = Callable[[IngestProgress], None]
LoadFn = Callable[..., LoadedDocument]
ChunkFn = Callable[..., list[ChunkSpec]]
_APPROX_TOKEN = re.compile(r"\w+|[^\w\s]")
_LOOKAHEAD = 8  # files prepared ahead of the embedder


def chunker_key(settings: Settings) -> str:
    """What decides chunk boundaries: ``"<CHUNKER_VERSION>:<chunk_tokens>:<chunk_overlap>"``."""
    return f"{CHUNKER_VERSION}:{settings.chunk_tokens}:{settings.chunk_overlap}"


def embedder_id(embedder: Embeddings) -> str:
    """``embedder.model_id`` (no model load), else ``"<ClassName>/<dim>"`` found by one probe."""
    model_id = getattr(embedder, "model_id", None)
    if isinstance(model_id, str) and model_id:
        return model_id
    return f"{type(embedder).__name__}/{len(embedder.embed_query('dimension probe'))}"


def _lexical_text(chunk: ChunkSpec, title: str | None) -> str:
    """What lexical search indexes for ``chunk``: its headings (else the document's title), then its text.

    A chunk rarely repeats the name of what it describes ("Options", "사용법"); its page and
    section titles do, and in a partly translated manual the headings are often the only words
    in the reader's language. The stored chunk text (what the model reads) stays as it was.
    """
    header = " ".join(chunk.heading_path) if chunk.heading_path else (title or "")
    return f"{header}\n{chunk.text}" if header else chunk.text


def _token_counter(embedder: Embeddings) -> Callable[[str], int]:
    """``embedder.tokenizer_count`` (called from a helper thread while the embedder encodes:
    it must be thread-safe), else a rough word-and-punctuation count."""
    counter = getattr(embedder, "tokenizer_count", None)
    if callable(counter):
        return counter  # type: ignore[no-any-return]
    return lambda s: len(_APPROX_TOKEN.findall(s))


# --- execute ----------------------------------------------------------------------------


@dataclass
class _Prepared:
    job: Job
    doc: LoadedDocument | None = None
    chunks: list[ChunkSpec] = field(default_factory=list)
    fts: Future[list[str]] | None = None  # analyzed FTS5 text per chunk (Kiwi, in its own thread)
    vectors: np.ndarray | None = None  # rows filled as embeddings arrive
    missing: set[int] = field(default_factory=set)  # chunk indexes still to embed
    error: FileResult | None = None
    drop_old: bool = False  # the file's new content is unusable: remove its stored chunks


class _Runner:
    """Executes a plan. Lives for one run; the main thread owns the catalogue writes."""

    def __init__(
        self,
        settings: Settings,
        cat: Catalogue,
        embedder: Embeddings,
        model: str,
        chunker: str,
        report: IngestReport,
        progress: ProgressFn | None,
        load: LoadFn,
        chunk: ChunkFn,
        run_id: int,
    ) -> None:
        self.settings, self.cat, self.embedder, self.model, self.chunker = settings, cat, embedder, model, chunker
        self.report, self.progress, self.load, self.chunk, self.run_id = report, progress, load, chunk, run_id
        self.count_tokens = _token_counter(embedder)
        self.analysis: ThreadPoolExecutor  # set while run_heavy runs
        self.removed_ids: list[int] = []
        self.added: list[tuple[list[int], np.ndarray]] = []
        self.files_done = 0
        self.files_total = 0
        self.dim: int | None = None

    # progress and results
    def _done(self, result: FileResult) -> None:
        self.report.record(result)
        self.files_done += 1
        if self.progress:
            self.progress(
                IngestProgress("work", self.files_done, self.files_total, self.report.chunks_written, result.path)
            )

    def _fields(self, job: Job, doc: LoadedDocument | None, n_chunks: int) -> dict[str, Any]:
        assert job.file is not None
        f = job.file
        values: dict[str, Any] = {
            "path": f.path,
            "size": f.size,
            "mtime_ns": f.mtime_ns,
            "sha256": job.sha,
            "embed_model": self.model,
            "chunker": self.chunker,
            "updated_at": time.time(),
            "run_id": self.run_id,
            "n_chunks": n_chunks,
        }
        if doc is not None:
            values.update(mime=doc.mime, title=doc.title)
        return values

    # quick jobs: no loading, no embedding
    def quick(self, job: Job) -> None:
        assert job.source_id is not None
        with self.cat.write() as s:
            if job.kind == "remove":
                self.removed_ids.extend(remove_source(s, job.source_id))
                self._done(FileResult(job.old_path, "removed", job.reason))
                return
            assert job.file is not None
            if job.kind == "copy":
                src = s.get(Source, job.source_id)
                assert src is not None
                fields = self._fields(job, None, src.n_chunks) | {"mime": src.mime, "title": src.title}
                ids, vecs = copy_source(s, job.source_id, fields)
                if vecs is not None:
                    self.added.append((ids, vecs))
                self.report.chunks_written += len(ids)
                self._done(FileResult(job.file.path, "added", job.reason, len(ids)))
                return
            values = {"path": job.file.path, "size": job.file.size, "mtime_ns": job.file.mtime_ns}
            s.execute(update(Source).where(Source.id == job.source_id).values(**values, run_id=self.run_id))
            status: FileStatus = "renamed" if job.kind == "rename" else "unchanged"
            self._done(FileResult(job.file.path, status, job.reason, job.n_chunks))

    # heavy jobs: load + chunk (+ analyze) in a helper thread, embed here, then write
    def prepare(self, job: Job) -> _Prepared:
        assert job.file is not None
        prep = _Prepared(job)
        try:
            doc = self.load(Path(job.file.path), max_bytes=self.settings.max_file_bytes)
            chunks = self.chunk(
                doc,
                count_tokens=self.count_tokens,
                chunk_tokens=self.settings.chunk_tokens,
                overlap_tokens=self.settings.chunk_overlap,
            )
            prep.doc, prep.chunks = doc, list(chunks)
            texts = [_lexical_text(c, doc.title) for c in prep.chunks]
            prep.fts = self.analysis.submit(lambda: [to_fts_text(t) for t in texts])
        except FileRejected as err:
            prep.error = FileResult(job.file.path, "skipped", err.message)
        except Exception as err:  # a loader bug must not stop the other files
            reason = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
            prep.error = FileResult(job.file.path, "failed", str(reason))
        prep.drop_old = prep.error is not None
        if prep.error is None:
            prep.missing = set(range(len(prep.chunks)))
            if job.source_id is not None and prep.chunks:
                self._reuse(prep)
        return prep

    def _reuse(self, prep: _Prepared) -> None:
        """Keep the stored vectors of chunk texts that did not change (same embedder)."""
        with self.cat.read() as s:
            old = {
                t: e
                for t, e in s.execute(
                    select(Chunk.text, Chunk.embedding).where(
                        Chunk.source_id == prep.job.source_id, Chunk.embed_model == self.model
                    )
                )
            }
        if not old:
            return
        dim = len(next(iter(old.values()))) // 4
        prep.vectors = np.zeros((len(prep.chunks), dim), dtype=np.float32)
        for i, c in enumerate(prep.chunks):
            blob = old.get(c.text)
            if blob is not None:
                prep.vectors[i] = np.frombuffer(blob, dtype="<f4")
                prep.missing.discard(i)

    def run_heavy(self, jobs: list[Job]) -> None:
        batch = max(self.settings.embed_batch_size * 4, 64)
        pending: deque[_Prepared] = deque()
        queue: list[tuple[_Prepared, int]] = []
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="saem-prepare") as pool,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="saem-analyze") as self.analysis,
        ):
            futures: deque[Future[_Prepared]] = deque()
            it = iter(jobs)
            for job in it:
                futures.append(pool.submit(self.prepare, job))
                if len(futures) >= _LOOKAHEAD:
                    break
            while futures:
                prep = futures.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    futures.append(pool.submit(self.prepare, nxt))
                pending.append(prep)
                queue.extend((prep, i) for i in sorted(prep.missing))
                while len(queue) >= batch:
                    self._embed(queue[:batch])
                    del queue[:batch]
                    self._flush(pending)
                self._flush(pending)
            while queue:
                self._embed(queue[:batch])
                del queue[:batch]
                self._flush(pending)
            self._flush(pending, wait=True)

    def _embed(self, items: list[tuple[_Prepared, int]]) -> None:
        live = [(p, i) for p, i in items if p.error is None]
        if not live:
            return
        try:
            raw = self.embedder.embed_documents([p.chunks[i].text for p, i in live])
            vecs = vindex.normalise(np.asarray(raw, dtype=np.float32))
            if vecs.shape[0] != len(live):
                raise ValueError(f"embedder returned {vecs.shape[0]} vectors for {len(live)} texts")
        except Exception as err:
            for p, _ in live:
                if p.error is None and p.job.file is not None:
                    p.error = FileResult(p.job.file.path, "failed", f"embedding failed: {type(err).__name__}: {err}")
            return
        self.dim = self.dim or int(vecs.shape[1])
        self.report.chunks_embedded += len(live)
        for (p, i), v in zip(live, vecs, strict=True):
            if p.vectors is None or p.vectors.shape[1] != v.shape[0]:
                p.vectors = np.zeros((len(p.chunks), v.shape[0]), dtype=np.float32)
            p.vectors[i] = v
            p.missing.discard(i)

    def _flush(self, pending: deque[_Prepared], *, wait: bool = False) -> None:
        """Write, in order, every prepared file at the head whose vectors (and, unless ``wait``,
        FTS tokens) are all in; the embedder keeps working while Kiwi is still busy."""
        while pending:
            head = pending[0]
            if head.error is None and head.missing:
                return
            if not wait and head.error is None and head.fts is not None and not head.fts.done():
                return
            self._write(pending.popleft())

    def _write(self, prep: _Prepared) -> None:
        job = prep.job
        assert job.file is not None
        if prep.error is not None:
            if prep.drop_old and job.source_id is not None:
                # its new content cannot be ingested: a clean run would not have the old chunks either
                with self.cat.write() as s:
                    self.removed_ids.extend(remove_source(s, job.source_id))
                prep.error = replace(prep.error, reason=prep.error.reason + "; its previous chunks were removed")
            self._done(prep.error)
            return
        n = len(prep.chunks)
        vectors = prep.vectors if prep.vectors is not None else np.zeros((0, self.dim or 1), dtype=np.float32)
        fts = prep.fts.result() if prep.fts is not None else []
        with self.cat.write() as s:
            removed, ids = replace_source(
                s, self._fields(job, prep.doc, n), prep.chunks, fts, vectors, source_id=job.source_id
            )
            if n and get_meta(s, "embed_model") != self.model:
                set_meta(s, "embed_model", self.model)
                set_meta(s, "dim", str(vectors.shape[1]))
            elif n and get_meta(s, "dim") is None:
                set_meta(s, "dim", str(vectors.shape[1]))
        self.removed_ids.extend(removed)
        if ids:
            self.added.append((ids, vectors))
        self.report.chunks_written += n
        status: FileStatus = "added" if job.kind == "add" else "renamed" if job.old_path else "updated"
        self._done(FileResult(job.file.path, status, job.reason, n))
        prep.chunks, prep.fts, prep.vectors, prep.doc = [], None, None, None  # free memory early


# --- the job ----------------------------------------------------------------------------


def _default_tools() -> tuple[LoadFn, ChunkFn, frozenset[str]]:
    from saem.ingest.chunking import chunk_document
    from saem.ingest.loaders import SUPPORTED_SUFFIXES, load_file

    return load_file, chunk_document, frozenset(SUPPORTED_SUFFIXES)


def ingest(
    settings: Settings,
    paths: Sequence[str | Path],
    *,
    embedder: Embeddings,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    dry_run: bool = False,
    prune: bool = True,
    progress: ProgressFn | None = None,
    lock_timeout: float = 0.0,
    load: LoadFn | None = None,
    chunk: ChunkFn | None = None,
    suffixes: Iterable[str] | None = None,
) -> IngestReport:
    """Bring the catalogue in ``settings.data_dir`` in line with the files under ``paths``.

    See the module docstring for the contract. ``load``/``chunk``/``suffixes`` replace the
    default loaders and chunker (tests). Raises ``StorageBusy`` when another ingest holds the
    data dir longer than ``lock_timeout``; per-file problems never raise, they are reported.
    """
    started = time.perf_counter()
    if load is None or chunk is None or suffixes is None:
        default_load, default_chunk, default_suffixes = _default_tools()
        load = load or default_load
        chunk = chunk or default_chunk
        suffixes = default_suffixes if suffixes is None else suffixes
    suffixes = frozenset(suffixes)
    data_dir = Path(settings.data_dir).absolute()
    report = IngestReport(dry_run=dry_run)
    model, chunker = embedder_id(embedder), chunker_key(settings)
    scan = planner.scan(
        paths, list(include or ()), list(exclude or ()), suffixes, data_dir, skip_dirs=settings.ingest_skip_dirs
    )
    if progress:
        progress(IngestProgress("scan", files_total=len(scan.files)))
    for r in scan.results:
        report.record(r)

    if dry_run:
        db = settings.db_path.absolute()
        cat = Catalogue.open(db, readonly=True) if db.is_file() else None
        try:
            plan = planner.plan(cat, scan, model, chunker, prune)
        finally:
            if cat is not None:
                cat.close()
        _report_dry(report, plan)
        report.seconds = time.perf_counter() - started
        return report

    lock = DataDirLock(data_dir)
    lock.acquire(lock_timeout)
    cat = Catalogue.open(settings.db_path.absolute())
    try:
        run_id, start_generation = _start_run(cat, scan.roots, model)
        status = "failed"
        try:
            plan = planner.plan(cat, scan, model, chunker, prune)
            if progress:
                progress(IngestProgress("plan", files_total=len(plan.jobs) + len(plan.unchanged)))
            report.messages.extend(plan.messages)
            for r in plan.results:
                report.record(r)
            for path, n in plan.unchanged:
                report.record(FileResult(path, "unchanged", "", n))
            runner = _Runner(settings, cat, embedder, model, chunker, report, progress, load, chunk, run_id)
            runner.files_total = len(plan.jobs)
            for job in plan.jobs:
                if not job.heavy:
                    runner.quick(job)
            heavy = [j for j in plan.jobs if j.heavy]
            if heavy:
                loader = getattr(embedder, "load", None)
                if callable(loader):
                    loader()  # explicit, once, and only when something needs embedding
                runner.run_heavy(heavy)
            with cat.write() as s:
                if get_meta(s, "chunker") != chunker and any(r.chunks for r in report.files):
                    set_meta(s, "chunker", chunker)
            if progress:
                progress(IngestProgress("index", runner.files_done, runner.files_total, report.chunks_written))
            vindex.update_after_run(
                data_dir,
                cat,
                start_generation=start_generation,
                removed_ids=runner.removed_ids,
                added=runner.added,
            )
            status = "ok"
        finally:
            report.seconds = time.perf_counter() - started
            _finish_run(cat, run_id, status, report)
    finally:
        cat.close()
        lock.release()
    if progress:
        progress(IngestProgress("done", report.added + report.updated + report.renamed, 0, report.chunks_written))
    return report


def _report_dry(report: IngestReport, plan: Plan) -> None:
    report.messages.extend(plan.messages)
    for r in plan.results:
        report.record(r)
    for path, n in plan.unchanged:
        report.record(FileResult(path, "unchanged", "", n))
    for job in plan.jobs:
        if job.kind == "remove":
            report.record(FileResult(job.old_path, "removed", job.reason, job.n_chunks))
            continue
        assert job.file is not None
        status = {"add": "added", "copy": "added", "touch": "unchanged", "rename": "renamed"}.get(job.kind, "updated")
        if job.kind == "update" and job.old_path:
            status = "renamed"
        report.record(FileResult(job.file.path, status, job.reason, job.n_chunks))  # type: ignore[arg-type]


def _start_run(cat: Catalogue, roots: list[str], model: str) -> tuple[int, int]:
    with cat.write() as s:
        # we hold the data-dir lock, so a "running" row is a run that was killed
        s.execute(update(Run).where(Run.status == "running").values(status="interrupted"))
        run = Run(started_at=time.time(), finished_at=None, roots=json.dumps(roots), embed_model=model)
        s.add(run)
        s.flush()
        return int(run.id), int(get_meta(s, "generation") or 0)


def _finish_run(cat: Catalogue, run_id: int, status: str, report: IngestReport) -> None:
    summary = {k: v for k, v in report.to_dict().items() if k not in ("files", "messages")}
    with cat.write() as s:
        s.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(status=status, finished_at=time.time(), summary=json.dumps(summary))
        )


def stats(settings: Settings) -> Stats:
    """What ``settings.data_dir`` holds. Read-only: creates nothing, loads no model, takes no lock."""
    data_dir = Path(settings.data_dir).absolute()
    db = settings.db_path.absolute()
    if not db.is_file():
        return Stats(0, 0, 0, None, None, 0, index_fresh=True)
    cat = Catalogue.open(db, readonly=True)
    try:
        with cat.read() as s:
            if not has_catalogue(s):  # chat data only: nothing ingested yet
                return Stats(0, 0, 0, None, None, 0, index_fresh=True)
            state = vindex.catalogue_state(s)
            n_sources = s.scalar(select(func.count(Source.id))) or 0
            n_chunks = s.scalar(select(func.count(Chunk.id))) or 0
            generation = int(get_meta(s, "generation") or 0)
            run = s.scalars(select(Run).order_by(Run.id.desc()).limit(1)).first()
        index = vindex.load_index_file(data_dir)
        last = None
        if run is not None:
            when = datetime.fromtimestamp(run.finished_at or run.started_at).isoformat(timespec="seconds")
            last = f"{run.status} {when}"
        return Stats(
            sources=int(n_sources),
            chunks=int(n_chunks),
            index_vectors=index.ntotal if index is not None else 0,
            embed_model=state.model if state else None,
            dim=state.dim if state else None,
            generation=generation,
            index_fresh=vindex.is_fresh(data_dir, state, index),
            stale_chunks=int(n_chunks) - (state.count if state else 0),
            last_run=last,
        )
    finally:
        cat.close()
