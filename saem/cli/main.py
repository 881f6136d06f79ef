"""The ``saem`` command: ingest folders, chat, ask, inspect models and settings.

Each command lives in its own module and is added here; a command that is not built yet
says so (exit code 2) instead of pretending.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from saem.cli import chat_cmd, config_cmd, demo_cmd, eval_cmd, ingest_cmd, models_cmd
from saem.cli._common import err_console, fail, state
from saem.cli._group import GlobalOptionsGroup
from saem.errors import SaemError

app = typer.Typer(
    name="saem",
    help=(
        "saem (샘) — local-first RAG and context engineering.\n\n"
        "Ingest a folder, then ask about it; everything runs offline on this machine.\n\n"
        "Examples:\n\n"
        "  saem ingest data/\n\n"
        '  saem ask "What does top-p do?"\n\n'
        "  saem chat --session notes\n\n"
        "  saem models\n\n"
        "  saem config show\n\n"
        "Global options (--data-dir, --config, --debug) may come before or after the command: "
        "saem chat -d notes/.saem is saem -d notes/.saem chat."
    ),
    cls=GlobalOptionsGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", "-d", help="Data dir (default .saem; env SAEM_DATA_DIR).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML settings file (default DATA_DIR/saem.toml).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Options that apply to every command (given before or after its name)."""
    s = state(ctx)
    s.data_dir = data_dir
    s.config = config
    s.debug = debug


config_cmd.register(app)
models_cmd.register(app)
ingest_cmd.register(app)
chat_cmd.register(app)
eval_cmd.register(app)
demo_cmd.register(app)


def main() -> None:
    """Entry point: errors become one line; ``--debug`` shows the traceback instead."""
    debug = "--debug" in sys.argv[1:]
    try:
        app(standalone_mode=True)
    except SaemError as err:  # raised outside a command's own handling
        try:
            fail(err, debug=debug)
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as err:  # a bug: still one line, unless the user asked for the traceback
        if debug:
            raise
        err_console.print(
            f"[bold red]internal error[/] ({type(err).__name__}): {err}\n"
            "[dim]→ run again with --debug for the traceback, and please report it[/]",
            highlight=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
