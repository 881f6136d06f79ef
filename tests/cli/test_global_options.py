"""Global options (-d/--data-dir, -c/--config, --debug) go before or after any command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saem.cli._group import hoist_options
from saem.cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={}, catch_exceptions=False)


@pytest.fixture
def bad_data_dir(tmp_path: Path) -> Path:
    """A data dir whose saem.toml is invalid: any command that reads it fails naming n_ctx."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "saem.toml").write_text('n_ctx = "lots"\n', encoding="utf-8")
    return data


COMMANDS = [
    ["chat"],
    ["ask", "what is top-p?"],
    ["eval", "--docs", "{docs}", "--qa", "{docs}/qa.jsonl"],
    ["lora", "train", "--docs", "{docs}", "--out", "{docs}/adapter"],
    ["demo", "{docs}"],
    ["ingest", "{docs}"],
    ["status"],
    ["models", "--no-load"],
    ["config", "show"],
    ["sessions", "list"],
    ["sessions", "show", "s1"],
    ["sessions", "delete", "s1"],
    ["memory", "list"],
    ["memory", "forget", "1"],
]


@pytest.mark.parametrize("form", ["-d", "--data-dir", "--data-dir="])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_data_dir_after_every_command_is_the_global_one(
    command: list[str], form: str, bad_data_dir: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "qa.jsonl").write_text("", encoding="utf-8")
    args = [a.replace("{docs}", str(docs)) for a in command]
    flag = [form + str(bad_data_dir)] if form.endswith("=") else [form, str(bad_data_dir)]
    result = invoke(*args, *flag)
    assert "No such option" not in result.output
    assert result.exit_code == 1, result.output
    assert "n_ctx" in result.output and "Traceback" not in result.output  # DATA_DIR/saem.toml was read


def test_config_and_debug_after_the_command(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("n_ctx = 2048\n", encoding="utf-8")
    shown = invoke("config", "show", "--json", "-c", str(good))
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["config_file"] == str(good) and data["settings"]["n_ctx"]["value"] == 2048
    bad = tmp_path / "bad.toml"
    bad.write_text("n_ctx = [", encoding="utf-8")
    plain = invoke("config", "show", "--config", str(bad))
    assert plain.exit_code == 1 and "Traceback" not in plain.output
    debug = invoke("config", "show", "--config", str(bad), "--debug")
    assert debug.exit_code == 1 and "Traceback" in debug.output


def test_the_last_data_dir_given_wins(tmp_path: Path) -> None:
    result = invoke("-d", str(tmp_path / "a"), "config", "show", "--json", "-d", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["settings"]["data_dir"]["value"] == str(tmp_path / "b")


def test_a_data_dir_without_its_value_is_a_usage_error() -> None:
    result = invoke("config", "show", "-d")
    assert result.exit_code == 2 and "requires an argument" in result.output


def test_help_says_global_options_may_come_anywhere() -> None:
    root = invoke("--help")
    assert root.exit_code == 0 and "before or after the command" in " ".join(root.output.split())  # it wraps
    sub = invoke("sessions", "list", "--help")
    assert sub.exit_code == 0 and "--data-dir" in sub.output and "--user" in sub.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ask", "q", "-d", "D"], ["-d", "D", "ask", "q"]),
        (
            ["-c", "F", "sessions", "list", "--debug", "--data-dir=D"],
            ["-c", "F", "--debug", "--data-dir=D", "sessions", "list"],
        ),
        (["ingest", "x", "-dD", "--dry-run"], ["-dD", "ingest", "x", "--dry-run"]),
        (["ask", "--", "-d", "D"], ["ask", "--", "-d", "D"]),  # after a literal -- nothing moves
        (["ask", "-s", "notes", "q"], ["ask", "-s", "notes", "q"]),
    ],
)
def test_hoist_options_moves_only_global_options_before_the_command(args: list[str], expected: list[str]) -> None:
    options = {"-d": True, "--data-dir": True, "-c": True, "--config": True, "--debug": False}
    assert hoist_options(args, options) == expected


def test_no_subcommand_reuses_a_global_option_name() -> None:
    """A subcommand's own -d or -c would be shadowed by the hoisting: refuse it here."""
    import typer.main

    root = typer.main.get_command(app)
    globals_ = {name for p in root.params for name in (*p.opts, *p.secondary_opts)}
    todo, clashes = list(root.commands.values()), []  # type: ignore[attr-defined]
    while todo:
        command = todo.pop()
        todo += getattr(command, "commands", {}).values()
        clashes += [(command.name, n) for p in command.params for n in (*p.opts, *p.secondary_opts) if n in globals_]
    assert globals_ >= {"-d", "--data-dir", "-c", "--config", "--debug"}
    assert clashes == []
