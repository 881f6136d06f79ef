"""Scan and plan for an ingest: which files exist, and what must happen to each.

``scan`` walks the roots (not following symlinks that leave their root, skipping dot-files,
FIFOs, devices and the data dir) and applies the include/exclude globs; ``plan`` compares the
result with the catalogue — size+mtime first, then sha256 — and returns the jobs: add, update,
rename, copy, touch (same content, new mtime), remove. Both only read: the planner never
writes, so a dry run is a scan plus a plan.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from saem.ingest.report import FileResult
from saem.store.catalogue import Catalogue, Source, get_meta

__all__ = ["Scanned", "Scan", "Job", "Plan", "scan", "plan"]


# --- scan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scanned:
    """A regular file found under a root (``path`` absolute, not symlink-resolved)."""

    path: str
    root: str
    size: int
    mtime_ns: int


@dataclass
class Scan:
    files: list[Scanned] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # every regular file seen, filters aside
    roots: list[str] = field(default_factory=list)  # roots that exist: prune scope
    results: list[FileResult] = field(default_factory=list)  # skipped / failed while scanning


def scan(
    paths: Sequence[str | Path],
    include: Sequence[str],
    exclude: Sequence[str],
    suffixes: Iterable[str],
    skip: Path,
    skip_dirs: Iterable[str] = (),
) -> Scan:
    """The files under ``paths``; folders named in ``skip_dirs`` (below a root) are not entered,
    and each is reported once as skipped."""
    out = Scan()
    skip_names = frozenset(skip_dirs)
    suffixes = {s.lower() for s in suffixes}
    skip_real = os.path.realpath(skip)

    def consider(path: str, root: str, st: os.stat_result) -> None:
        out.present.add(path)
        rel = os.path.relpath(path, root) if path != root else os.path.basename(path)
        name = os.path.basename(path)
        if include and not any(fnmatchcase(rel, g) or fnmatchcase(name, g) for g in include):
            return
        if any(fnmatchcase(rel, g) or fnmatchcase(name, g) for g in exclude):
            return
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in suffixes:
            out.results.append(FileResult(path, "skipped", f"unsupported file type {suffix or '(no suffix)'}"))
            return
        out.files.append(Scanned(path, root, st.st_size, st.st_mtime_ns))

    def walk(folder: str, root: str, root_real: str, seen: set[str]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            out.results.append(FileResult(folder, "failed", f"cannot list folder: {err.strerror or err}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = entry.path
            real = os.path.realpath(path)
            if real == skip_real or real.startswith(skip_real + os.sep):
                continue
            if entry.is_symlink() and not (real == root_real or real.startswith(root_real + os.sep)):
                out.results.append(FileResult(path, "skipped", "symlink points outside the root; not followed"))
                continue
            try:
                st = os.stat(path)
            except OSError as err:
                out.results.append(FileResult(path, "skipped", f"cannot stat: {err.strerror or err}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name in skip_names:
                    out.results.append(FileResult(path, "skipped", f"folder {entry.name!r} is in ingest_skip_dirs "
                                                  "(generated copies); ingest it by name to include it"))  # fmt: skip
                    continue
                if real not in seen:  # symlink loops
                    walk(path, root, root_real, seen | {real})
            elif stat.S_ISREG(st.st_mode):
                consider(path, root, st)
            else:
                out.results.append(FileResult(path, "skipped", f"not a regular file ({_kind(st.st_mode)})"))

    for raw in paths:
        root = os.path.abspath(os.fspath(raw))
        try:
            st = os.stat(root)
        except OSError as err:
            out.results.append(FileResult(root, "failed", f"cannot read path: {err.strerror or err}"))
            continue
        out.roots.append(root)
        if stat.S_ISDIR(st.st_mode):
            walk(root, root, os.path.realpath(root), {os.path.realpath(root)})
        elif stat.S_ISREG(st.st_mode):
            consider(root, root, st)
        else:
            out.results.append(FileResult(root, "skipped", f"not a regular file ({_kind(st.st_mode)})"))
    return out


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# --- plan -------------------------------------------------------------------------------


@dataclass
class Job:
    kind: str  # add | update | rename | copy | touch | remove
    file: Scanned | None
    sha: str = ""
    source_id: int | None = None  # row to replace, move, touch, remove, or copy from
    old_path: str = ""
    reason: str = ""
    n_chunks: int = 0

    @property
    def heavy(self) -> bool:
        return self.kind in ("add", "update")


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    unchanged: list[tuple[str, int]] = field(default_factory=list)
    results: list[FileResult] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def plan(cat: Catalogue | None, scan: Scan, model: str, chunker: str, prune: bool) -> Plan:
    plan = Plan()
    existing: dict[str, Source] = {}
    old_model = old_chunker = None
    if cat is not None:
        with cat.read() as s:
            conds = [Source.path == r for r in scan.roots] + [
                Source.path.startswith(r.rstrip(os.sep) + os.sep, autoescape=True) for r in scan.roots
            ]
            if conds:
                existing = {src.path: src for src in s.scalars(select(Source).where(or_(*conds)))}
            old_model = get_meta(s, "embed_model")
            old_chunker = get_meta(s, "chunker")
    gone = {p: src for p, src in existing.items() if p not in scan.present and _under(p, scan.roots)}
    gone_by_sha: dict[str, list[Source]] = {}
    for old in gone.values():
        gone_by_sha.setdefault(old.sha256, []).append(old)
    new_files: list[tuple[Scanned, str]] = []
    for f in scan.files:
        src = existing.get(f.path)
        keys_ok = src is not None and src.embed_model == model and src.chunker == chunker
        if src is not None and keys_ok and src.size == f.size and src.mtime_ns == f.mtime_ns:
            plan.unchanged.append((f.path, src.n_chunks))
            continue
        try:
            sha = _sha256(f.path)
        except OSError as err:
            plan.results.append(FileResult(f.path, "failed", f"cannot read: {err.strerror or err}"))
            continue
        if src is None:
            new_files.append((f, sha))
        elif src.sha256 == sha and keys_ok:
            plan.jobs.append(Job("touch", f, sha, src.id, n_chunks=src.n_chunks))
        else:
            why = "content changed" if src.sha256 != sha else _keys_reason(src, model, chunker)
            plan.jobs.append(Job("update", f, sha, src.id, reason=why))
    copy_from: dict[str, Source] = {}
    if cat is not None and new_files:
        with cat.read() as s:
            copy_from = _by_sha(s, {sha for _, sha in new_files}, model, chunker)
    for f, sha in new_files:
        twins = gone_by_sha.get(sha)
        if twins:
            src = twins.pop()
            del gone[src.path]
            keys_ok = src.embed_model == model and src.chunker == chunker
            if keys_ok:
                plan.jobs.append(Job("rename", f, sha, src.id, src.path, f"renamed from {src.path}", src.n_chunks))
            else:
                reason = f"renamed from {src.path}; {_keys_reason(src, model, chunker)}"
                plan.jobs.append(Job("update", f, sha, src.id, src.path, reason))
        elif sha in copy_from:
            twin = copy_from[sha]
            plan.jobs.append(Job("copy", f, sha, twin.id, reason=f"same content as {twin.path}"))
        else:
            plan.jobs.append(Job("add", f, sha))
    if prune:
        for path, src in sorted(gone.items()):
            plan.jobs.append(Job("remove", None, src.sha256, src.id, path, "file is gone", src.n_chunks))
    if old_model and old_model != model:
        plan.messages.append(f"embedder changed ({old_model} → {model}): re-embedding every file it made")
    if old_chunker and old_chunker != chunker:
        plan.messages.append(f"chunker settings changed ({old_chunker} → {chunker}): re-chunking")
    return plan


def _by_sha(s: Any, shas: set[str], model: str, chunker: str) -> dict[str, Source]:
    if not shas:
        return {}
    rows = s.scalars(
        select(Source).where(Source.sha256.in_(shas), Source.embed_model == model, Source.chunker == chunker)
    )
    return {src.sha256: src for src in rows}


def _keys_reason(src: Source, model: str, chunker: str) -> str:
    if src.embed_model != model:
        return f"embedder changed ({src.embed_model} → {model})"
    return f"chunker settings changed ({src.chunker} → {chunker})"
