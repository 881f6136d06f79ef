"""``saem ingest`` fails (exit 1, one line) when it could read nothing; a rerun is not a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from saem.cli.main import app

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)


def _missing(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "nope"), str(tmp_path / "nope.md")]


def _unsupported(tmp_path: Path) -> list[str]:
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "a.xyz").write_text("x", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    return [str(tmp_path / "odd"), str(tmp_path / "empty")]


def _all_excluded(tmp_path: Path) -> list[str]:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# hi\n\nhello", encoding="utf-8")
    return [str(tmp_path / "docs"), "--exclude", "*.md"]


@pytest.mark.unit
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("inputs", [_missing, _unsupported, _all_excluded], ids=lambda f: f.__name__[1:])
def test_ingest_that_reads_nothing_exits_1_saying_what_to_do(inputs, dry_run: bool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = inputs(tmp_path)
    result = invoke("ingest", *args, "-d", str(tmp_path / "data"), *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "nothing was ingested" in line]
    assert len(lines) == 1 and args[0] in lines[0]
    assert ".md" in result.output and "Traceback" not in result.output  # the hint names the supported types
    if "--exclude" in args:
        assert "--include/--exclude" in result.output


@pytest.mark.integration
def test_partial_failure_and_unchanged_rerun_exit_0(tmp_path: Path) -> None:
    """One readable file is enough; a rerun that finds everything unchanged is a success."""
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    (docs / "a.txt").write_text("Top-p sampling keeps the smallest set of tokens.", encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"not a pdf")
    first = invoke("ingest", str(docs), "-d", str(data))
    assert first.exit_code == 0, first.output
    assert "broken.pdf" in first.output and "nothing was ingested" not in first.output
    again = invoke("ingest", str(docs), "-d", str(data))
    assert again.exit_code == 0, again.output
    assert "nothing was ingested" not in again.output
    unchanged = next(line for line in again.output.splitlines() if "unchanged" in line)
    assert unchanged.split()[-2] == "1"
