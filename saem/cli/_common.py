"""What every saem command shares: the settings from flags, one-line errors, the console."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from saem.errors import SaemError
from saem.settings import Settings

console = Console()
err_console = Console(stderr=True)


@dataclass
class AppState:
    """Global options, given before or after the command name (``saem ingest ... --data-dir D``)."""

    data_dir: Path | None = None
    config: Path | None = None
    debug: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **more: Any) -> Settings:
        """Settings with CLI flags > env > file > defaults."""
        values = {"data_dir": self.data_dir, **self.overrides, **more}
        return Settings.load(values, config_file=self.config)


def state(ctx: typer.Context) -> AppState:
    """The AppState the main callback stored (a fresh one when a command runs alone in tests)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def fail(err: SaemError, *, debug: bool) -> None:
    """Print one line (what happened — what to do) and exit 1; ``--debug`` shows the traceback."""
    if debug:
        err_console.print_exception(show_locals=False)
    name = type(err).__name__
    line = f"[bold red]error[/] ({name}): {err.message}"
    if err.hint:
        line += f"\n[dim]→ {err.hint}[/]"
    err_console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(2 if name == "NotBuiltYet" else 1)


def is_interactive() -> bool:
    """True when both stdin and stdout are terminals (a person is at the keyboard)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def describe_answer_mode(settings: Settings) -> str:
    """The answer mode a turn uses, for banners: ``auto`` says what it chose and why."""
    mode = settings.effective_answer_mode
    if settings.answer_mode != "auto":
        return mode
    if mode == "extractive":
        return "extractive (auto: the packaged model is tiny; answers quote the documents, cited)"
    return f"{mode} (auto)"
