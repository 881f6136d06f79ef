"""Commands whose capability is still being built: each says so, with exit code 2.

As each capability lands, its command moves to its own module.
"""

from __future__ import annotations

import typer

from saem.cli._common import fail, state
from saem.errors import NotBuiltYet

_PENDING = {
    "ask": ("Answer one question from the ingested documents.", "question answering", "issue 7"),
    "chat": ("Open the chat REPL.", "the chat REPL", "issue 9"),
    "eval": ("Compare RAG against a LoRA-tuned model.", "evaluation", "issue 10"),
    "lora": ("Train a LoRA adapter on a folder.", "LoRA training", "issue 10"),
}


def register(app: typer.Typer) -> None:
    for name, (help_text, feature, issue) in _PENDING.items():
        _add(app, name, help_text, feature, issue)


def _add(app: typer.Typer, name: str, help_text: str, feature: str, issue: str) -> None:
    @app.command(
        name,
        help=f"{help_text} [not built yet]",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _pending(ctx: typer.Context) -> None:
        fail(NotBuiltYet(feature, issue=issue), debug=state(ctx).debug)
