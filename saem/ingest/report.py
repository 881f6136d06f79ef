"""What an ingest run returns (``IngestReport``), what a data dir holds (``Stats``), and the
progress events an ingest emits while it runs (``IngestProgress``).

    report = app.ingest("docs/")
    print(report.added, report.updated, report.renamed, report.chunks_written)
    for row in report.problems():
        print(row.path, row.status, row.reason)

All three are plain frozen-or-simple dataclasses: JSON-able through ``to_dict``, no pickle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["FileStatus", "FileResult", "IngestReport", "Stats", "IngestProgress", "STATUSES"]

FileStatus = Literal["added", "updated", "unchanged", "renamed", "removed", "skipped", "failed"]
STATUSES: tuple[FileStatus, ...] = ("added", "updated", "unchanged", "renamed", "removed", "skipped", "failed")


@dataclass(frozen=True)
class FileResult:
    """One file's outcome. ``reason`` says why for every status but ``unchanged``/``added``.

    For a rename, ``path`` is the new path and ``reason`` names the old one.
    """

    path: str
    status: FileStatus
    reason: str = ""
    chunks: int = 0  # chunks this file now has in the catalogue (0 for removed/skipped/failed)


@dataclass
class IngestReport:
    """The outcome of one ``Saem.ingest`` call.

    Counts are per file and each file is counted once: a rename counts as ``renamed`` only
    (not as one removal plus one addition). ``chunks_written`` counts chunk rows inserted
    (renames and unchanged files write none). With ``dry_run`` the counts are the plan: what
    a real run would do; nothing was written.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    renamed: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0  # texts sent to the embedder (reused embeddings are not counted)
    seconds: float = 0.0
    dry_run: bool = False
    files: list[FileResult] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # run-level notes, e.g. "embedder changed"

    def record(self, result: FileResult) -> None:
        """Add one file's outcome and bump its counter."""
        self.files.append(result)
        setattr(self, result.status, getattr(self, result.status) + 1)

    def problems(self) -> list[FileResult]:
        """The skipped and failed files, failures first."""
        return [r for r in self.files if r.status == "failed"] + [r for r in self.files if r.status == "skipped"]

    @property
    def changed(self) -> bool:
        """True when the run changed (or, dry, would change) the catalogue."""
        return bool(self.added or self.updated or self.renamed or self.removed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stats:
    """What a data dir holds. ``index_vectors`` is what the FAISS file on disk holds (0 when
    it is missing); ``index_fresh`` is False when it disagrees with SQLite and will be rebuilt
    at the next open or ingest."""

    sources: int
    chunks: int
    index_vectors: int
    embed_model: str | None
    dim: int | None
    generation: int
    index_fresh: bool = True
    stale_chunks: int = 0  # chunks embedded by another model than ``embed_model``
    last_run: str | None = None  # "ok 2026-05-09T10:00:00" or "interrupted ..."

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IngestProgress:
    """A progress event. ``phase`` is ``scan``, ``plan``, ``work`` or ``index``; totals are
    known from ``work`` on (``files_total`` counts files that need loading)."""

    phase: Literal["scan", "plan", "work", "index", "done"]
    files_done: int = 0
    files_total: int = 0
    chunks_done: int = 0
    path: str | None = None
