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

import functools
import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from langchain_core.embeddings import Embeddings
from sqlalchemy import func, select, update

from saem.ingest import planner
from saem.ingest._runner import ChunkFn, LoadFn, ProgressFn, Runner
from saem.ingest.planner import Plan
from saem.ingest.report import FileResult, IngestProgress, IngestReport, Stats
from saem.ingest.types import CHUNKER_VERSION
from saem.models.embedders import embedder_id
from saem.settings import Settings
from saem.store import index as vindex
from saem.store.catalogue import Catalogue, Chunk, DataDirLock, Run, Source, get_meta, has_catalogue, set_meta

__all__ = ["ingest", "stats", "embedder_id", "chunker_key"]


def chunker_key(settings: Settings) -> str:
    """What decides chunk boundaries: ``"<CHUNKER_VERSION>:<chunk_tokens>:<chunk_overlap>"``."""
    return f"{CHUNKER_VERSION}:{settings.chunk_tokens}:{settings.chunk_overlap}"


# --- the job ----------------------------------------------------------------------------


def _default_tools(settings: Settings) -> tuple[LoadFn, ChunkFn, frozenset[str]]:
    """saem's loaders, with the ``ingest_loaders`` (LangChain loaders) for more suffixes."""
    from saem.ingest.chunking import chunk_document
    from saem.ingest.loaders import SUPPORTED_SUFFIXES, load_file
    from saem.ingest.loaders.langchain import loaders_from_settings

    extra = loaders_from_settings(settings.ingest_loaders)
    load: LoadFn = functools.partial(load_file, extra=extra) if extra else load_file
    return load, chunk_document, frozenset(SUPPORTED_SUFFIXES) | frozenset(extra)


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
        default_load, default_chunk, default_suffixes = _default_tools(settings)
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
            runner = Runner(settings, cat, embedder, model, chunker, report, progress, load, chunk, run_id)
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
