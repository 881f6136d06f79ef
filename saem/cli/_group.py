"""The root ``saem`` group: global options anywhere on the line, and one-line errors.

``saem chat -d D`` is read as ``saem -d D chat``: the root's own options (``--data-dir``,
``--config``, ``--debug``, whatever the callback in ``main.py`` declares) found after the
command name are moved before it, so no command redeclares them. Moving stops at a literal
``--``; ``--data-dir=D`` and ``-dD`` are understood. No subcommand may use these names for
anything else (a later ``-d`` always means the data dir).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption

from saem.cli._common import fail, state
from saem.errors import SaemError

_EPILOG = "Global options -d/--data-dir, -c/--config and --debug work here too (saem --help)."


class GlobalOptionsGroup(TyperGroup):
    """A ``TyperGroup`` whose own options may also follow the (sub)command name; every
    subcommand's help says so."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        todo = list(self.commands.values())
        while todo:
            command = todo.pop()
            command.epilog = command.epilog or _EPILOG
            todo += getattr(command, "commands", {}).values()

    # ctx is typed as typer.Context, the public subclass of whichever click typer runs on
    # (its vendored copy from typer 0.22, the click package before), hence the ignores.
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        options = {
            name: not p.is_flag
            for p in self.params
            if isinstance(p, TyperOption)
            for name in (*p.opts, *p.secondary_opts)
        }
        try:
            args = hoist_options(args, options)
        except ValueError as err:
            ctx.fail(str(err))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        # A command that lets a SaemError escape still gets the one-line treatment.
        try:
            return super().invoke(ctx)
        except SaemError as err:
            fail(err, debug=state(ctx).debug)


def hoist_options(args: Sequence[str], options: Mapping[str, bool]) -> list[str]:
    """``args`` with the ``options`` found after the command name moved before it.

    ``options`` maps each option name (``-d``, ``--data-dir``) to whether it takes a value.
    Order among the moved options is kept, so the last one given still wins. Raises
    ``ValueError`` when a moved option lacks its value.
    """

    def span(i: int) -> int:
        """How many tokens from ``args[i]`` are one of ``options`` (0: none)."""
        token = args[i]
        if token in options:
            return 2 if options[token] else 1
        name, eq, _ = token.partition("=")
        if eq and token.startswith("--") and options.get(name):
            return 1
        short = token[:2]
        if len(token) > 2 and not token.startswith("--") and options.get(short):
            return 1
        return 0

    i = 0
    while i < len(args) and (n := span(i)):
        i += n
    if i >= len(args) or args[i] == "--":
        return list(args)
    before, command = list(args[:i]), args[i]
    moved: list[str] = []
    kept: list[str] = []
    j = i + 1
    while j < len(args):
        if args[j] == "--":
            kept += args[j:]
            break
        n = span(j)
        if n == 0:
            kept.append(args[j])
            j += 1
            continue
        if j + n > len(args):
            raise ValueError(f"Option '{args[j]}' requires an argument.")
        moved += args[j : j + n]
        j += n
    return before + moved + [command] + kept
