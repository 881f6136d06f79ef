"""``saem config show``: the effective settings and where each value came from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.table import Table

from saem.cli._common import console, fail, state
from saem.errors import SaemError
from saem.settings import Settings


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)

    @config_app.command("show")
    def show(
        ctx: typer.Context,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Print every setting, its value and its origin (cli > env > file > default).

        Example: SAEM_N_THREADS=2 saem config show
        """
        st = state(ctx)
        try:
            settings = st.settings()
        except SaemError as err:
            fail(err, debug=st.debug)
        if as_json:
            payload = {
                "config_file": str(settings.config_file) if settings.config_file else None,
                "settings": {k: {"value": v, "origin": o} for k, v, o in _json_rows(settings)},
            }
            typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
            return
        table = Table(title="saem settings", caption=f"config file: {settings.config_file or '(none)'}")
        table.add_column("key", style="bold")
        table.add_column("value")
        table.add_column("from")
        table.add_column("meaning", style="dim")
        for key, value, origin, description in settings.explain():
            style = "" if origin == "default" else "green"
            table.add_row(key, str(value), f"[{style}]{origin}[/]" if style else origin, description)
        console.print(table)

    app.add_typer(config_app, name="config")


def _json_rows(settings: Settings) -> Iterator[tuple[str, Any, str]]:
    """(key, JSON-ready value, origin) for every setting."""
    data = settings.to_json_dict()
    for key, _value, origin, _ in settings.explain():
        yield key, data[key], origin
