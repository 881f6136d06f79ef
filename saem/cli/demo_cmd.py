"""``saem demo``: what ``make demo`` runs — check the models, ingest the sample documents, then
chat (on a terminal) or answer two sample questions (no terminal: CI, pipes).

Each step that is not built yet is reported as such; nothing is faked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from saem.cli._common import console, fail, is_interactive, state
from saem.errors import NotBuiltYet, SaemError

SAMPLE_QUESTIONS = (
    "top-p 샘플링은 무엇을 조절하나요?",
    "What does LoRA train instead of the full weight matrix?",
)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        docs: Annotated[Path, typer.Argument(help="Folder of documents to ingest.")] = Path("data"),
        chat: Annotated[
            bool | None, typer.Option("--chat/--no-chat", help="Open the REPL (default: only on a terminal).")
        ] = None,
    ) -> None:
        """Check models, ingest DOCS (default data/), then chat or answer two sample questions.

        Example: saem demo            (what 'make demo' runs)
        """
        from saem.app.saem import Saem
        from saem.cli.models_cmd import print_model_table

        st = state(ctx)
        try:
            app = Saem(st.settings())
            console.print(Panel.fit(f"saem demo — data dir [bold]{app.settings.data_dir}[/]", style="cyan"))
            rows = app.check_models()
            print_model_table(rows)
            if not all(r.usable for r in rows):
                raise typer.Exit(1)
            missing: list[str] = []
            _step("ingest", lambda: _ingest(app, docs), missing)
            interactive = is_interactive() if chat is None else chat
            if interactive:
                _step("chat", lambda: _chat(app), missing)
            else:
                for question in SAMPLE_QUESTIONS:
                    _step("ask", lambda q=question: _ask(app, q), missing)
        except SaemError as err:
            fail(err, debug=st.debug)
        if missing:
            console.print(
                "[yellow]Not built yet:[/] "
                + "; ".join(dict.fromkeys(missing))
                + ". The demo stops after what exists (see README.md, 'Status')."
            )
        elif app.settings.answer_mode == "auto" and app.settings.effective_answer_mode == "extractive":
            console.print(
                "\n[dim]The packaged SmolLM2-135M is tiny and cannot write Korean, so the answers above quote the "
                "documents (answer_mode auto = extractive). For generated answers set chat_model to a bigger "
                f"instruct GGUF in {app.settings.data_dir / 'saem.toml'}; the sources above are what it reads.[/]"
            )


def _step(name: str, action, missing: list[str]) -> None:  # type: ignore[no-untyped-def]
    try:
        action()
    except NotBuiltYet as err:
        console.print(f"[yellow]· {name}:[/] {err.message}")
        missing.append(err.feature)


def _ingest(app, docs: Path) -> None:  # type: ignore[no-untyped-def]
    from saem.cli.ingest_cmd import show_report

    # qa.jsonl holds the evaluation questions and their evidence: never part of the corpus
    report = app.ingest(docs, exclude=["qa.jsonl"])
    show_report(report, quiet_unchanged=True)


def _ask(app, question: str) -> None:  # type: ignore[no-untyped-def]
    answer = app.ask(question, session_id="demo", user_id="demo")
    console.print(f"\n[bold]Q:[/] {question}\n[bold]A:[/] {answer.text}", highlight=False)
    for notice in answer.notices:
        console.print(f"[yellow]  note:[/] {notice}", highlight=False)
    cited = {c.n for c in answer.citations if c.supported}
    console.print("[dim]  sources (hybrid retrieval: dense + lexical, fused):[/]")
    for src in answer.sources:
        mark = "✓" if src.n in cited else " "
        console.print(f"  {mark} [{src.n}] {src.source} [{src.start}:{src.end}] {src.heading or '-'}", highlight=False)


def _chat(app) -> None:  # type: ignore[no-untyped-def]
    from saem.cli.repl import Repl

    Repl(
        app, session_id="demo", user_id="demo", console=console, history_file=app.settings.data_dir / "repl_history"
    ).run(interactive=True)
