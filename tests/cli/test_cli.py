"""The ``saem`` command: help that helps, settings with origins, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saem.cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=env or {}, catch_exceptions=False)


def test_help_lists_every_command_with_examples() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("ingest", "chat", "ask", "models", "config", "eval", "demo"):
        assert command in result.output
    assert "Examples" in result.output


def test_config_show_reports_origins(tmp_path: Path) -> None:
    (tmp_path / "saem.toml").write_text("n_ctx = 2048\n", encoding="utf-8")
    result = invoke("--data-dir", str(tmp_path), "config", "show", "--json", env={"SAEM_TEMPERATURE": "0.3"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = data["settings"]
    assert rows["n_ctx"] == {"value": 2048, "origin": "file"}
    assert rows["temperature"] == {"value": 0.3, "origin": "env"}
    assert rows["data_dir"]["origin"] == "cli"
    assert rows["seed"]["origin"] == "default"
    assert data["config_file"] == str(tmp_path / "saem.toml")


def test_config_show_table_mentions_each_key(tmp_path: Path) -> None:
    result = invoke("--data-dir", str(tmp_path), "config", "show")
    assert result.exit_code == 0
    for key in ("chat_model", "embed_model", "rerank_model", "n_threads", "allow_downloads"):
        assert key in result.output


def test_invalid_setting_is_one_line_naming_the_key(tmp_path: Path) -> None:
    result = invoke("--data-dir", str(tmp_path), "config", "show", env={"SAEM_N_CTX": "lots"})
    assert result.exit_code == 1
    assert "n_ctx" in result.output and "Traceback" not in result.output


def test_models_with_a_missing_chat_model_fails_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "none.gguf"
    result = invoke("models", "--no-load", "--json", env={"SAEM_CHAT_MODEL": str(missing)})
    assert result.exit_code == 1
    chat = json.loads(result.output)[0]
    assert chat["usable"] is False and str(missing) in chat["detail"]


def test_models_no_load_resolves_the_packaged_defaults() -> None:
    result = invoke("models", "--no-load", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["kind"]: row for row in json.loads(result.output)}
    assert rows["chat"]["source"] == "packaged" and rows["chat"]["path"].endswith(".gguf")
    assert rows["chat"]["size_bytes"] > 50_000_000
    assert rows["embed"]["usable"] and rows["rerank"]["source"] == "none"


def test_unexpected_errors_are_one_line_unless_debug(tmp_path: Path) -> None:
    """Run the real entry point in a subprocess: a bad TOML gives one line, --debug a traceback."""
    cfg = tmp_path / "saem.toml"
    cfg.write_text("n_ctx = [", encoding="utf-8")
    cmd = [sys.executable, "-m", "saem.cli.main", "--data-dir", str(tmp_path), "config", "show"]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr and "cannot read config file" in plain.stderr
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_ingest_and_status_take_data_dir_after_the_command_too(tmp_path: Path) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    (docs / "a.txt").write_text("hello world", encoding="utf-8")
    plan = invoke("ingest", str(docs), "--data-dir", str(data), "--dry-run")
    assert plan.exit_code == 0 and "a.txt" in plan.output and "added" in plan.output
    assert not data.exists()  # a dry run writes nothing, not even the data dir
    status = invoke("status", "-d", str(data))
    assert status.exit_code == 0 and str(data) in "".join(status.output.split())  # the title wraps


def test_store_commands_work_when_the_chat_model_file_is_missing(tmp_path: Path) -> None:
    """Listing sessions and memories and showing status read saem.db only: no model is loaded,
    and a saem.db that holds sessions but no ingest yet is a valid data dir."""
    from langchain_core.messages import AIMessage, HumanMessage

    from saem.memory.history import SQLiteChatMessageHistory
    from saem.settings import Settings

    data = tmp_path / "data"
    data.mkdir()
    (data / "saem.toml").write_text('chat_model = "/nonexistent.gguf"\n', encoding="utf-8")
    db = Settings(data_dir=data).db_path
    SQLiteChatMessageHistory("trip-notes", db).add_messages([HumanMessage("hello"), AIMessage("hi")])
    sessions = invoke("sessions", "list", "-d", str(data))
    assert sessions.exit_code == 0, sessions.output
    assert "trip-notes" in sessions.output and "2 messages" in sessions.output
    memories = invoke("memory", "list", "-d", str(data))
    assert memories.exit_code == 0, memories.output
    assert "error" not in memories.output
    status = invoke("status", "-d", str(data), "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["sources"] == 0
