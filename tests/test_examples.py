"""The programs in examples/ run as a user runs them, on the packaged models, and say what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def run(script: str, *args: Path) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_ask_a_folder_then_use_it_as_a_retriever_in_a_chain(tmp_path: Path) -> None:
    data = tmp_path / "saem"
    first = run("ask_a_folder.py", ROOT / "data", data)
    assert "ingested:" in first and " 0 added" not in first
    assert "Q: LoRA는 무엇을 학습하나요?" in first and "Q: What does top-p sampling keep?" in first
    assert "[1] " in first and "prompt: " in first
    again = run("ask_a_folder.py", ROOT / "data", data)
    assert ", 0 chunks written" in again  # incremental: a rerun writes nothing
    chain = run("retriever_in_a_chain.py", data)
    assert "--- system" in chain and "--- human\nWhat does LoRA train?" in chain
    assert "[1] " in chain and "lora" in chain.lower()
