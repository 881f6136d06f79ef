"""Executing an ingest plan: load, chunk and embed each file outside any transaction, then
write it in one short transaction (``saem.ingest.pipeline`` holds the contract).

A helper thread loads and chunks files ahead (up to ``_LOOKAHEAD_FILES`` files and
``_LOOKAHEAD_BYTES`` of them at once), a second one analyses
their lexical (FTS5) text, and the calling thread embeds chunks in batches across files and
writes each file, in plan order, once its vectors and FTS rows are in. Unchanged chunk texts
of an updated file keep their stored vectors.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from sqlalchemy import select, update

from saem.errors import FileRejected
from saem.ingest.planner import Job
from saem.ingest.report import FileResult, FileStatus, IngestProgress, IngestReport
from saem.ingest.types import ChunkSpec, LoadedDocument
from saem.models.protocols import TokenLimitedEmbedder
from saem.settings import Settings
from saem.store import index as vindex
from saem.store.catalogue import (
    Catalogue,
    Chunk,
    Source,
    copy_source,
    get_meta,
    remove_source,
    replace_source,
    set_meta,
)
from saem.text.analyzer import to_fts_texts

__all__ = ["Runner", "ProgressFn", "LoadFn", "ChunkFn"]

ProgressFn = Callable[[IngestProgress], None]
LoadFn = Callable[..., LoadedDocument]
ChunkFn = Callable[..., list[ChunkSpec]]
_APPROX_TOKEN = re.compile(r"\w+|[^\w\s]")
# Files prepared ahead of the embedder. The embedder takes a batch of chunks (a dozen small
# pages) at a time, so the helper must hold more than one batch ready, or the embedder waits for
# it between batches; the byte bound keeps a run of large files from filling memory.
_LOOKAHEAD_FILES = 64
_LOOKAHEAD_BYTES = 64 << 20


def _lexical_text(chunk: ChunkSpec, title: str | None) -> str:
    """What lexical search indexes for ``chunk``: its headings (else the document's title), then its text.

    A chunk rarely repeats the name of what it describes ("Options", "사용법"); its page and
    section titles do, and in a partly translated manual the headings are often the only words
    in the reader's language. The stored chunk text (what the model reads) stays as it was.
    """
    header = " ".join(chunk.heading_path) if chunk.heading_path else (title or "")
    return f"{header}\n{chunk.text}" if header else chunk.text


def _token_counter(embedder: Embeddings) -> Callable[[str], int]:
    """The embedder's own ``tokenizer_count`` when it is a
    :class:`~saem.models.protocols.TokenLimitedEmbedder` (called from a helper thread while the
    embedder encodes: it must be thread-safe, as the protocol says), else a rough
    word-and-punctuation count."""
    if isinstance(embedder, TokenLimitedEmbedder):
        return embedder.tokenizer_count
    return lambda s: len(_APPROX_TOKEN.findall(s))


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


class Runner:
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
            prep.fts = self.analysis.submit(to_fts_texts, texts)
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
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saem-prepare")
        self.analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saem-analyze")
        try:
            self._pipeline(jobs, pool)
        finally:
            # After an error or Ctrl-C the files queued ahead are dropped, not prepared first.
            pool.shutdown(cancel_futures=True)
            self.analysis.shutdown(cancel_futures=True)

    def _pipeline(self, jobs: list[Job], pool: ThreadPoolExecutor) -> None:
        batch = max(self.settings.embed_batch_size * 4, 64)
        pending: deque[_Prepared] = deque()
        queue: list[tuple[_Prepared, int]] = []
        futures: deque[tuple[Future[_Prepared], int]] = deque()  # with each file's size
        ahead = deque(jobs)
        in_flight = 0

        def submit_ahead() -> None:
            nonlocal in_flight
            while ahead and (not futures or (len(futures) < _LOOKAHEAD_FILES and in_flight < _LOOKAHEAD_BYTES)):
                job = ahead.popleft()
                size = job.file.size if job.file is not None else 0
                futures.append((pool.submit(self.prepare, job), size))
                in_flight += size

        submit_ahead()
        while futures:
            future, size = futures.popleft()
            prep = future.result()
            in_flight -= size
            submit_ahead()
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
