"""``saem models``: what each configured model resolves to, its size, load time, usability."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from saem.cli._common import console, describe_answer_mode, fail, state
from saem.errors import SaemError

if TYPE_CHECKING:
    from saem.models.check import ModelStatus
    from saem.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(
    ctx: typer.Context,
    no_load: Annotated[bool, typer.Option("--no-load", help="Only resolve paths; do not load weights.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the chat model, embedder and reranker: source, file, size, load time, usable.

    Exit code 1 when a configured model is not usable.

    Examples: saem models    ·    SAEM_CHAT_MODEL=~/models/qwen2.5-3b-q4.gguf saem models
    """
    from saem.models.check import check_models

    st = state(ctx)
    try:
        settings = st.settings()
    except SaemError as err:
        fail(err, debug=st.debug)
    rows = check_models(settings, load=not no_load)
    hint = rerank_hint(settings)
    if as_json:
        out = [{**_row_json(r), "hint": hint if r.kind == "rerank" else None} for r in rows]
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        raise typer.Exit(0 if all(r.usable for r in rows) else 1)
    print_model_table(rows)
    if hint:
        console.print(f"[dim]{escape(hint)}[/]", highlight=False)
    console.print(f"answer mode: {describe_answer_mode(settings)}", highlight=False)
    console.print(
        '[dim]A stronger chat model: put chat_model = "/path/to/model.gguf" in '
        f"{settings.data_dir / 'saem.toml'} (or SAEM_CHAT_MODEL).[/]"
    )
    if not all(r.usable for r in rows):
        raise typer.Exit(1)


def rerank_hint(settings: Settings) -> str | None:
    """How to turn on a cross-encoder when ``rerank_model`` is none (else None); ``saem models``
    prints it under the table and puts it in the reranker's ``"hint"`` with ``--json``."""
    if settings.rerank_model.strip().lower() not in {"none", "off", ""}:
        return None
    where = settings.data_dir / "saem.toml"
    return (
        f'No cross-encoder reranker. To rerank the hits, put rerank_model = "/path/to/cross-encoder" in {where} '
        "(or set SAEM_RERANK_MODEL): a local sentence-transformers CrossEncoder folder, "
        "e.g. a downloaded bge-reranker-v2-m3."
    )


def print_model_table(rows: list[ModelStatus]) -> None:
    """Render ``check_models`` rows as a table."""
    table = Table(title="saem models")
    for col in ("kind", "setting", "resolves to", "size", "load", "usable", "detail"):
        table.add_column(col, overflow="fold")
    for row in rows:
        where = "-"
        if row.resolved is not None:
            where = str(row.resolved.path or row.resolved.hub_id or "none")
        size = f"{row.size_bytes / 1e6:.1f} MB" if row.size_bytes else "-"
        load = f"{row.load_seconds:.2f} s" if row.load_seconds is not None else "-"
        ok = "[green]yes[/]" if row.usable else "[red]no[/]"
        table.add_row(row.kind, row.setting, where, size, load, ok, row.detail)
    console.print(table)


def _row_json(row: ModelStatus) -> dict[str, Any]:
    resolved = row.resolved
    return {
        "kind": row.kind,
        "setting": row.setting,
        "source": resolved.source if resolved else None,
        "path": str(resolved.path) if resolved and resolved.path else None,
        "hub_id": resolved.hub_id if resolved else None,
        "size_bytes": row.size_bytes,
        "load_seconds": row.load_seconds,
        "usable": row.usable,
        "detail": row.detail,
    }
