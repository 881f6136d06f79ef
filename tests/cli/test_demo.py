"""``saem demo`` (what ``make demo`` runs) works end to end on the packaged models and data/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_without_a_terminal_ingests_and_shows_sources(tmp_path: Path, repo_root: Path) -> None:
    cmd = [sys.executable, "-m", "saem.cli.main", "--data-dir", str(tmp_path / "dd"), "demo", str(repo_root / "data")]
    run = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    out = run.stdout
    assert run.returncode == 0, run.stderr
    assert "ingest summary" in out
    assert "qa.jsonl" not in out  # the QA file is never ingested as a document
    assert "top-p 샘플링은 무엇을 조절하나요?" in out and "What does LoRA train" in out
    # the English question over the Korean LoRA document finds it
    sources = out.split("What does LoRA train")[1]
    assert "A:" in sources and "ko_lora_finetuning.md" in sources  # the Korean document serves the English question
    assert "not built yet" not in out
    assert "cannot write Korean" in out and "quote the" in out  # it says honestly what the tiny model can do
    from saem import Saem

    before = Saem(data_dir=tmp_path / "dd").stats()
    assert before.sources == 10 and before.chunks == before.index_vectors > 0
    again = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert again.returncode == 0
    after = Saem(data_dir=tmp_path / "dd").stats()
    assert after.generation == before.generation and after.chunks == before.chunks  # a rerun writes nothing
