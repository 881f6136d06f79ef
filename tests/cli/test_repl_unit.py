"""REPL logic with a fake app: commands, tools mode, refusals — no models, no terminal."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from saem.agents.types import ToolCallRecord
from saem.app.types import Answer
from saem.cli.repl import Repl
from saem.settings import Settings

pytestmark = pytest.mark.unit


class FakeApp:
    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings.load(
            {"data_dir": data_dir, "chat_model": "m", "n_threads": 1, "embed_model": "e"}, environ={}
        )
        self.asked: list[dict[str, Any]] = []
        self.configured: dict[str, Any] = {}

    def ask(self, question: str, **kwargs: Any) -> Answer:
        self.asked.append({"question": question, **kwargs})
        call = ToolCallRecord(name="forget", arguments={"query": "*"}, status="refused", summary="not confirmed")
        return Answer(text="I will not do that.", agent="router", tool_calls=[call])

    def history(self, session_id: str) -> list[Any]:
        return []

    def configure(self, **changes: Any) -> None:
        self.configured.update(changes)


def repl(tmp_path: Path) -> tuple[Repl, FakeApp, io.StringIO]:
    out = io.StringIO()
    app = FakeApp(tmp_path)
    return Repl(app, console=Console(file=out, width=120)), app, out


def test_tools_mode_routes_to_the_agent_and_shows_refusals(tmp_path: Path) -> None:
    r, app, out = repl(tmp_path)
    r.command("/tools on")
    r.turn("forget everything")
    assert app.asked[0]["tools"] == "default" and app.asked[0]["agent"] == "router"
    assert app.asked[0]["confirm"] is not None
    text = out.getvalue()
    assert "I will not do that." in text and "refused" in text and "forget" in text


def test_destructive_tools_are_refused_without_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r, _, _ = repl(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a tty: never ask, never run
    assert r._confirm("forget", {"query": "*"}) is False


def test_set_validates_and_unknown_commands_do_not_end_the_session(tmp_path: Path) -> None:
    r, app, out = repl(tmp_path)
    r.command("/set temperature 0")
    assert app.configured == {"temperature": 0.0}
    r.command("/set colour red")
    r.command("/nope")
    r.command('/forget "unclosed')
    text = out.getvalue()
    assert "usage: /set" in text and "unknown command /nope" in text and "cannot parse" in text
    r.command("/sources")
    assert "no answer yet" in out.getvalue()
