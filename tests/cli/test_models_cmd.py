"""``saem models``: with no reranker it says how to configure a cross-encoder, in the table and in --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saem.cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()


def invoke(*args: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def _names_the_fix(text: str) -> bool:
    flat = " ".join(text.split())  # the table's console wraps long lines
    return "rerank_model" in flat and "CrossEncoder folder" in flat and "SAEM_RERANK_MODEL" in flat


def test_without_a_reranker_the_table_says_how_to_configure_a_cross_encoder(tmp_path: Path) -> None:
    result = invoke("--data-dir", str(tmp_path), "models", "--no-load", env={"SAEM_RERANK_MODEL": "none"})
    assert result.exit_code == 0, result.output
    assert "No cross-encoder reranker" in result.output and _names_the_fix(result.output)
    assert str(tmp_path / "saem.toml") in "".join(result.output.split())  # where to put it (path may wrap)


def test_without_a_reranker_the_json_keeps_the_hint_on_the_reranker_entry(tmp_path: Path) -> None:
    result = invoke("--data-dir", str(tmp_path), "models", "--no-load", "--json", env={"SAEM_RERANK_MODEL": "none"})
    assert result.exit_code == 0, result.output
    rows = {row["kind"]: row for row in json.loads(result.output)}  # the output is JSON only
    assert rows["rerank"]["source"] == "none" and _names_the_fix(rows["rerank"]["hint"])
    assert rows["chat"]["hint"] is None and rows["embed"]["hint"] is None


def test_with_a_cross_encoder_configured_there_is_no_hint(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-ce"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")  # resolves; --no-load never reads it
    env = {"SAEM_RERANK_MODEL": str(folder)}
    plain = invoke("--data-dir", str(tmp_path), "models", "--no-load", env=env)
    assert plain.exit_code == 0, plain.output
    assert "No cross-encoder reranker" not in plain.output
    rows = {r["kind"]: r for r in json.loads(invoke("--data-dir", str(tmp_path), "models", "--no-load", "--json",
                                                    env=env).output)}  # fmt: skip
    assert rows["rerank"]["source"] == "path" and rows["rerank"]["hint"] is None
