"""The real REPL in a pseudo-terminal: streamed answers, sources, slash commands, Ctrl-C, resume."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x08\r]")
PROMPT = "t1>"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    from saem import Saem

    root = tmp_path_factory.mktemp("repl")
    docs = root / "docs"
    shutil.copytree(repo_root / "data", docs, ignore=shutil.ignore_patterns("qa.jsonl"))
    Saem(data_dir=root / "dd").ingest(docs)
    return root / "dd"


def spawn(data_dir: Path) -> pexpect.spawn:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50", "PROMPT_TOOLKIT_NO_CPR": "1"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "saem.cli.main", "-d", str(data_dir), "chat", "--session", "t1"],
        encoding="utf-8",
        timeout=400,
        dimensions=(50, 160),
        env=env,
    )
    child.expect(PROMPT)
    return child


def clean(text: str) -> str:
    return ANSI.sub("", text)


def ask(child: pexpect.spawn, line: str, until: str) -> str:
    """Send ``line``; wait for ``until`` (a regex the output must show), then the next prompt."""
    child.sendline(line)
    child.expect(until)
    seen = child.before + child.after
    child.expect(PROMPT)
    return clean(seen + child.before)


def test_repl_session_end_to_end(data_dir: Path) -> None:
    child = spawn(data_dir)
    try:
        _session(child, data_dir)
    finally:
        child.close(force=True)  # never leave a generating REPL behind a failed assertion


def _session(child: pexpect.spawn, data_dir: Path) -> None:
    english = ask(child, "What does LoRA train instead of the full weight matrix?", r"\[1\] \S+ko_lora")
    assert "ko_lora_finetuning.md" in english  # the sources follow the streamed answer
    korean = ask(child, "top-p 샘플링은 무엇을 조절하나요?", r"\[1\] \S+\.(md|html|txt)")
    assert "sampling" in korean
    prompt = ask(child, "/prompt", r"\d+\S* tokens")
    assert "<|im_start|>" in prompt and "top-p 샘플링은 무엇을 조절하나요?" in prompt
    budget = ask(child, "/budget", "reserved for the answer")
    assert "documents" in budget and "question" in budget
    sources = ask(child, "/sources", "sources of the last answer")
    assert "dense" in sources and "lexical" in sources
    settled = ask(child, "/set temperature 0", r"temperature = \S*0\.0")
    assert "temperature = 0.0" in settled
    model = ask(child, "/model", "n_ctx")
    assert "temperature 0.0" in model
    unknown = ask(child, "/nonsense", "unknown command")
    assert "/help" in unknown

    # Ctrl-C during a generation stops it and keeps the session
    child.sendline("Explain, step by step and at length, how attention, sampling and LoRA work together.")
    child.expect([r"\[1\] ", "stopped", PROMPT, r"\w"], timeout=400)
    child.sendintr()
    child.expect(PROMPT, timeout=400)
    child.sendline("/exit")
    child.expect(pexpect.EOF, timeout=60)

    again = spawn(data_dir)  # a new process resumes the stored session
    try:
        banner = clean(again.before)
        match = re.search(r"resuming: (\d+) earlier messages", banner)
        assert match is not None and int(match.group(1)) >= 4, banner
        again.sendcontrol("d")
        again.expect(pexpect.EOF, timeout=60)
    finally:
        again.close(force=True)


def test_ask_json_matches_its_schema(data_dir: Path) -> None:
    import json
    import subprocess

    import jsonschema

    from saem.cli.chat_cmd import ASK_SCHEMA_FILE

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "saem.cli.main",
            "-d",
            str(data_dir),
            "ask",
            "What is top-p sampling?",
            "--json",
            "--session",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    payload = json.loads(run.stdout)
    jsonschema.validate(payload, json.loads(ASK_SCHEMA_FILE.read_text(encoding="utf-8")))
    assert payload["sources"] and payload["budget"]["prompt_tokens"] <= payload["budget"]["n_ctx"]


def test_ask_without_an_index_says_how_to_ingest(tmp_path: Path) -> None:
    import subprocess

    run = subprocess.run(
        [sys.executable, "-m", "saem.cli.main", "-d", str(tmp_path / "empty"), "ask", "hello"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "Nothing is ingested" in run.stdout and "saem --data-dir" in run.stdout
