"""``saem ingest PATH...`` and ``saem status``.

``ingest`` shows a progress bar (files, chunks, chunks/s, ETA), then a summary table and every
skipped or failed file with its reason. Exit code 0; 1 when no input could be read at all
(every path missing, no supported file, every file failed), with ``--strict`` when any file
failed, or when another ingest holds the data dir (``--wait SECONDS`` to queue instead).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from saem.cli._common import console, fail, state
from saem.errors import IngestError, SaemError
from saem.ingest.report import STATUSES, IngestProgress, IngestReport, Stats

_MAX_ROWS = 25  # problem rows shown before grouping by reason


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_command(
        ctx: typer.Context,
        paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.", show_default=False)],
        include: Annotated[
            list[str] | None, typer.Option("--include", help="Only files matching GLOB (repeatable).")
        ] = None,
        exclude: Annotated[
            list[str] | None, typer.Option("--exclude", help="Skip files matching GLOB (repeatable).")
        ] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
        no_prune: Annotated[bool, typer.Option("--no-prune", help="Keep sources whose files are gone.")] = False,
        watch: Annotated[bool, typer.Option("--watch", help="Keep running; re-ingest when files change.")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any file failed.")] = False,
        wait: Annotated[float, typer.Option("--wait", help="Wait up to SECONDS for another ingest.")] = 0.0,
        interval: Annotated[float, typer.Option("--interval", help="Polling interval for --watch.")] = 2.0,
    ) -> None:
        """Ingest files and folders: incremental, crash-safe; a rerun writes only what changed.

        Examples: saem ingest docs/ --exclude '*.tmp'   ·   saem ingest notes/ --dry-run
        """
        st = state(ctx)
        try:
            from saem.app.saem import Saem

            app_ = Saem(st.settings())

            def run_once() -> IngestReport:
                with ProgressView(enabled=not dry_run) as view:
                    return app_.ingest(
                        *paths,
                        include=include,
                        exclude=exclude,
                        dry_run=dry_run,
                        prune=not no_prune,
                        progress=view.update,
                        wait=wait,
                    )

            report = run_once()
            show_report(report)
            unread = nothing_read(report, paths, filtered=bool(include or exclude))
            if unread and not watch:
                raise unread
            if unread:  # watching a folder that is still empty is fine
                console.print(f"[yellow]note:[/] {unread.message}")
            if watch and not dry_run:
                _watch(paths, interval, lambda: show_report(run_once(), quiet_unchanged=True))
        except SaemError as err:
            fail(err, debug=st.debug)
        if strict and report.failed:
            raise typer.Exit(1)

    @app.command("status")
    def status_command(
        ctx: typer.Context,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Show what the data dir holds: sources, chunks, index vectors, embedder, generation."""
        st = state(ctx)
        try:
            from saem.app.saem import Saem

            settings = st.settings()
            stats = Saem(settings).stats()
        except SaemError as err:
            fail(err, debug=st.debug)
        if as_json:
            console.print_json(json.dumps(stats.to_dict(), ensure_ascii=False))
            return
        show_stats(stats, str(settings.data_dir))


class ProgressView:
    """A rich progress bar fed by ``IngestProgress`` events (silent when disabled)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]:>13}"),
            TextColumn("{task.fields[chunks]:>7} chunks"),
            TextColumn("{task.fields[rate]:>7.1f} chunks/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.started = time.perf_counter()

    def __enter__(self) -> ProgressView:
        if self.enabled:
            self.progress.start()
            self.task = self.progress.add_task("scanning", total=None, chunks=0, rate=0.0, files="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def update(self, event: IngestProgress) -> None:
        if self.task is None:
            return
        if event.phase == "work" and event.files_done <= 1:
            self.started = time.perf_counter()
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        description = {"scan": "scanning", "plan": "planning", "work": "ingesting", "index": "indexing"}.get(
            event.phase, "done"
        )
        total = event.files_total if event.phase in ("work", "index") else None
        self.progress.update(
            self.task,
            description=description,
            total=total,
            completed=event.files_done,
            chunks=event.chunks_done,
            rate=event.chunks_done / elapsed if event.phase == "work" else 0.0,
            files=f"{event.files_done}/{event.files_total} files" if total is not None else "",
        )


def nothing_read(report: IngestReport, paths: Sequence[Path], *, filtered: bool) -> IngestError | None:
    """The error for a run that read no input at all, or None.

    A file counts as read when it was (or, dry, would be) added, updated, renamed, or found
    unchanged, so rerunning on an unchanged folder is not an error. Removals do not count.
    """
    if report.added or report.updated or report.unchanged or report.renamed:
        return None
    from saem.ingest.loaders import SUPPORTED_SUFFIXES

    where = str(paths[0]) + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
    counts = ", ".join(f"{n} {name}" for name, n in (("failed", report.failed), ("skipped", report.skipped)) if n)
    reasons = f" ({counts}; reasons above)" if counts else ""
    hint = "give existing files or folders holding " + " ".join(sorted(SUPPORTED_SUFFIXES)) + " files"
    if filtered:
        hint += ", or loosen --include/--exclude"
    return IngestError(f"nothing was ingested: no file could be read from {where}{reasons}", hint=hint)


def show_report(report: IngestReport, *, quiet_unchanged: bool = False) -> None:
    """The summary table, run messages, and the skipped/failed files with reasons."""
    if quiet_unchanged and not report.changed and not report.failed:
        return
    for message in report.messages:
        console.print(f"[yellow]note:[/] {message}")
    title = "ingest plan (dry run: nothing written)" if report.dry_run else "ingest summary"
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    for name in STATUSES:
        n = getattr(report, name)
        style = {"failed": "red", "skipped": "yellow"}.get(name, "") if n else "dim"
        table.add_row(name, f"[{style}]{n}[/]" if style else str(n))
    table.add_row("chunks written", str(report.chunks_written))
    table.add_row("chunks embedded", str(report.chunks_embedded))
    table.add_row("seconds", f"{report.seconds:.2f}")
    console.print(table)
    if report.dry_run:
        _show_rows("planned changes", [r for r in report.files if r.status not in ("unchanged", "skipped", "failed")])
    _show_rows("skipped and failed files", report.problems())


def _show_rows(title: str, rows: Sequence) -> None:  # type: ignore[type-arg]
    if not rows:
        return
    table = Table(title=title, show_header=True)
    table.add_column("status")
    table.add_column("file", overflow="fold")
    table.add_column("reason", overflow="fold")
    shown = [r for r in rows if r.status == "failed"] + [r for r in rows if r.status != "failed"]
    for r in shown[:_MAX_ROWS]:
        style = "red" if r.status == "failed" else "yellow" if r.status == "skipped" else ""
        table.add_row(f"[{style}]{r.status}[/]" if style else r.status, r.path, r.reason)
    console.print(table)
    rest = shown[_MAX_ROWS:]
    if rest:
        by_reason = Counter((r.status, r.reason) for r in rest)
        for (status, reason), n in by_reason.most_common():
            console.print(f"  … and {n} more {status}: {reason}")


def show_stats(stats: Stats, data_dir: str) -> None:
    table = Table(title=f"saem status — {data_dir}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    fresh = "yes" if stats.index_fresh else "[yellow]no — rebuilt at next open or ingest[/]"
    for key, value in (
        ("sources", stats.sources),
        ("chunks", stats.chunks),
        ("index vectors", stats.index_vectors),
        ("index matches catalogue", fresh),
        ("embedder", stats.embed_model or "(none yet)"),
        ("dimension", stats.dim or "-"),
        ("generation", stats.generation),
        ("stale chunks (other embedder)", stats.stale_chunks),
        ("last run", stats.last_run or "-"),
    ):
        table.add_row(key, str(value))
    console.print(table)


def _snapshot(paths: Sequence[Path]) -> frozenset[tuple[str, int, int]]:
    out: set[tuple[str, int, int]] = set()
    for root in paths:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                p = os.path.join(folder, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                out.add((p, st.st_size, st.st_mtime_ns))
        if os.path.isfile(root):
            st = os.stat(root)
            out.add((str(root), st.st_size, st.st_mtime_ns))
    return frozenset(out)


def _watch(paths: Sequence[Path], interval: float, rerun: Callable[[], None]) -> None:
    """Re-ingest whenever the files under ``paths`` change; Ctrl-C stops. Polls (no extra deps)."""
    console.print(f"[dim]watching {len(paths)} path(s) every {interval:g}s — Ctrl-C to stop[/]")
    before = _snapshot(paths)
    try:
        while True:
            time.sleep(max(interval, 0.2))
            now = _snapshot(paths)
            if now != before:
                time.sleep(0.3)  # let a burst of writes settle
                before = _snapshot(paths)
                rerun()
    except KeyboardInterrupt:
        console.print("[dim]stopped watching[/]")
