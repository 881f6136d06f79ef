"""``saem chat``, ``saem ask``, ``saem sessions`` and ``saem memory``: the everyday commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from saem.cli._common import console, fail, is_interactive, state
from saem.errors import SaemError

ASK_SCHEMA_FILE = Path(__file__).with_name("ask_schema.json")


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
    app.command("ask")(ask)
    sessions_app = typer.Typer(help="List, show and delete chat sessions.", no_args_is_help=True)
    sessions_app.command("list")(sessions_list)
    sessions_app.command("show")(sessions_show)
    sessions_app.command("delete")(sessions_delete)
    app.add_typer(sessions_app, name="sessions")
    memory_app = typer.Typer(help="List and forget long-term memories.", no_args_is_help=True)
    memory_app.command("list")(memory_list)
    memory_app.command("forget")(memory_forget)
    app.add_typer(memory_app, name="memory")


def _app(ctx: typer.Context, **overrides: Any) -> Any:
    from saem.app.saem import Saem

    st = state(ctx)
    return Saem(st.settings(**{k: v for k, v in overrides.items() if v is not None}))


def _require_index(app: Any) -> bool:
    """A friendly word on first run: nothing ingested yet."""
    if app.stats().chunks:
        return True
    console.print(
        f"[yellow]Nothing is ingested in {app.settings.data_dir} yet.[/] Ingest a folder first, e.g. the sample "
        f"documents:\n  saem --data-dir {app.settings.data_dir} ingest data/ --exclude qa.jsonl"
    )
    return False


def chat(
    ctx: typer.Context,
    session: Annotated[str, typer.Option("--session", "-s", help="Session name (kept across runs).")] = "default",
    user: Annotated[str, typer.Option("--user", "-u", help="User id (memories are per user).")] = "default",
    model: Annotated[Path | None, typer.Option("--model", "-m", help="A .gguf to chat with.")] = None,
) -> None:
    """Open the chat REPL: streamed answers, sources, and /prompt, /budget, /sources, /trace.

    Examples: saem chat    ·    saem chat --session notes --user me    ·    echo "질문" | saem chat
    """
    from saem.cli.repl import Repl

    st = state(ctx)
    try:
        app = _app(ctx, chat_model=str(model) if model else None)
        if not _require_index(app):
            raise typer.Exit(1)
        history = app.settings.data_dir / "repl_history"
        Repl(app, session_id=session, user_id=user, console=console, history_file=history).run(is_interactive())
    except SaemError as err:
        fail(err, debug=st.debug)


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (schema: saem/cli/ask_schema.json).")
    ] = False,
    session: Annotated[str, typer.Option("--session", "-s", help="Session name.")] = "default",
    user: Annotated[str, typer.Option("--user", "-u", help="User id.")] = "default",
    answer_mode: Annotated[
        str | None, typer.Option("--answer-mode", help="generate | extractive | hybrid (default: auto)")
    ] = None,
) -> None:
    """Answer one question from the ingested documents, with sources. Exit code 0, or 1 on error.

    Examples: saem ask "What does top-p do?"    ·    saem ask "LoRA의 랭크란?" --json
    """
    st = state(ctx)
    try:
        app = _app(ctx, answer_mode=answer_mode)
        if not _require_index(app):
            raise typer.Exit(1)
        answer = app.ask(question, session_id=session, user_id=user)
    except SaemError as err:
        if as_json:
            typer.echo(
                json.dumps({"error": err.message, "hint": err.hint, "kind": type(err).__name__}, ensure_ascii=False)
            )
            raise typer.Exit(1) from None
        fail(err, debug=st.debug)
    if as_json:
        typer.echo(json.dumps(answer_json(answer), ensure_ascii=False))
        return
    from rich.markdown import Markdown

    console.print(Markdown(answer.text))
    for notice in answer.notices:
        console.print(f"[yellow]note:[/] {notice}")
    cited = {c.n for c in answer.citations if c.supported}
    for s in answer.sources:
        mark = "✓" if s.n in cited else " "
        console.print(f"[dim]{mark} [{s.n}] {s.source} · {s.heading or '-'} · {s.start}-{s.end}[/]", highlight=False)


def answer_json(answer: Any) -> dict[str, Any]:
    """The ``saem ask --json`` object (validated in tests against ask_schema.json)."""
    budget = answer.budget.to_dict() if answer.budget is not None else None
    return {
        "question": answer.question,
        "text": answer.text,
        "language": answer.language,
        "abstained": answer.abstained,
        "trace_id": answer.trace_id,
        "session_id": answer.session_id,
        "notices": list(answer.notices),
        "budget": budget,
        "citations": [
            {"n": c.n, "status": c.status, "source": c.source, "start": c.start, "end": c.end, "reason": c.reason}
            for c in answer.citations
        ],
        "sources": [
            {
                "n": s.n,
                "chunk_id": str(s.chunk_id),
                "source": s.source,
                "start": s.start,
                "end": s.end,
                "heading": s.heading,
                "page": s.page,
                "score": s.score,
            }
            for s in answer.sources
        ],
    }


def sessions_list(ctx: typer.Context, user: Annotated[str | None, typer.Option("--user", "-u")] = None) -> None:
    """List sessions (most recent first)."""
    app = _app(ctx)
    for info in app.sessions(user):
        console.print(f"{info.id}\t{info.user_id}\t{info.n_messages} messages\t{info.title or ''}", highlight=False)


def sessions_show(ctx: typer.Context, session: Annotated[str, typer.Argument()]) -> None:
    """Print a session's messages."""
    app = _app(ctx)
    for message in app.history(session):
        console.print(f"[bold]{message.type}[/]: {message.content}", highlight=False)


def sessions_delete(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument()],
    user: Annotated[str, typer.Option("--user", "-u")] = "default",
) -> None:
    """Delete a session and its messages."""
    app = _app(ctx)
    if not app.delete_session(session, user_id=user):
        console.print(f"no session {session!r} for user {user!r}")
        raise typer.Exit(1)
    console.print(f"deleted session {session!r}")


def memory_list(ctx: typer.Context, user: Annotated[str, typer.Option("--user", "-u")] = "default") -> None:
    """List a user's long-term memories."""
    app = _app(ctx)
    for m in app.memories(user):
        console.print(f"{m.id}\t{m.text}", highlight=False)


def memory_forget(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A memory id, or text: memories close to it are removed.")],
    user: Annotated[str, typer.Option("--user", "-u")] = "default",
) -> None:
    """Forget a memory by id, or those close to some text."""
    app = _app(ctx)
    removed = app.forget(user, id=int(target)) if target.isdigit() else app.forget(user, query=target)
    console.print(f"forgot {len(removed)}")
