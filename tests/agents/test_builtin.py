"""Built-in tools: calculator safety, read_file confinement, search citations, memory, time, sources."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from langchain_core.documents import Document

from saem.agents.builtin import builtin_tools, calculate, format_snippets, read_file_tool
from saem.agents.registry import ToolRegistry
from saem.errors import ToolError
from saem.memory import LongTermMemory, MemoryDB
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit


# --- calculator --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("-3 + +2", -1),
        ("10 / 4", 2.5),
        ("sqrt(16)", 4.0),
        ("log(e)", 1.0),
        ("round(cos(0))", 1),
        ("2^3", 8),
        ("log(8, 2)", 3.0),
    ],
)
def test_calculator_arithmetic(expression: str, value: float) -> None:
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "(1).__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "lambda: 1",
        "x",
        "open('/etc/passwd')",
        "math.sqrt(4)",
        "'a' * 3",
        "[1, 2]",
        "1 if 1 else 2",
        "sqrt(x=4)",
        "1 < 2",
        "1 << 100",
        "True + 1",
        "2j",
        "sqrt(-1)",
        "1 / 0",
        "exp(1000)",
        "9" * 301,
    ],
)
def test_calculator_rejects_hostile_or_invalid_input(expression: str) -> None:
    with pytest.raises(ToolError):
        calculate(expression)


@pytest.mark.parametrize(
    "expression",
    ["2**10**10", "9**9**9", "10**5000", "(10**1000)*(10**1000)*(10**1000)*(10**1000)*(10**1000)", "2**-100000"],
)
def test_calculator_rejects_huge_results_fast(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError):
        calculate(expression)
    assert time.perf_counter() - started < 1.0


def test_calculator_tool_formats_results() -> None:
    calc = next(t for t in builtin_tools() if t.name == "calculator")
    assert calc.invoke({"expression": "1/3"}) == "0.333333333333"
    assert calc.invoke({"expression": "2**100"}) == str(2**100)


# --- read_file ---------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("hello notes", encoding="utf-8")
    (root / "sub" / "deep.md").write_text("# deep", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("top secret", encoding="utf-8")
    return root


def read(root: Path, path: str, **kwargs: int) -> str:
    return str(read_file_tool([root], **kwargs).invoke({"path": path}))


def test_read_file_inside_root(root: Path) -> None:
    assert read(root, "notes.txt") == "hello notes"
    assert read(root, "sub/deep.md") == "# deep"
    assert read(root, str(root / "notes.txt")) == "hello notes"  # absolute, but inside


def test_read_file_symlink_inside_root_is_fine(root: Path) -> None:
    (root / "alias.txt").symlink_to(root / "notes.txt")
    assert read(root, "alias.txt") == "hello notes"


@pytest.mark.parametrize("path", ["../secret.txt", "../../etc/passwd", "sub/../../secret.txt", "/etc/passwd"])
def test_read_file_refuses_escapes(root: Path, path: str) -> None:
    with pytest.raises(ToolError, match="refused"):
        read(root, path)


def test_read_file_refuses_absolute_path_outside(root: Path) -> None:
    with pytest.raises(ToolError, match="outside"):
        read(root, str(root.parent / "secret.txt"))


def test_read_file_refuses_symlink_escape(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    (root / "linkdir").symlink_to(root.parent)
    for path in ("link.txt", "linkdir/secret.txt"):
        with pytest.raises(ToolError, match="outside"):
            read(root, path)


def test_read_file_refuses_fifo_without_blocking(root: Path) -> None:
    os.mkfifo(root / "pipe")
    started = time.perf_counter()
    with pytest.raises(ToolError, match="not a regular file"):
        read(root, "pipe")
    assert time.perf_counter() - started < 1.0


def test_read_file_refuses_directories_big_binary_and_missing(root: Path) -> None:
    (root / "big.txt").write_text("x" * 2000, encoding="utf-8")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ToolError, match="not a regular file"):
        read(root, "sub")
    with pytest.raises(ToolError, match="limit"):
        read(root, "big.txt", max_bytes=1000)
    with pytest.raises(ToolError, match="binary"):
        read(root, "blob.bin")
    with pytest.raises(ToolError, match="no such file"):
        read(root, "missing.txt")


def test_read_file_through_the_registry_reports_refusal_as_failed(root: Path) -> None:
    session = ToolRegistry([read_file_tool([root])]).session()
    record = session.call("read_file", {"path": "../../etc/passwd"})
    assert (record.status, record.fatal) == ("failed", False)
    assert "root:" not in record.output


# --- search, memory, time, sources -------------------------------------------------------------


def test_search_documents_cites_source_and_span() -> None:
    docs = [
        Document(
            "LoRA adds low-rank  adapters.", metadata={"source": "a.md", "start": 10, "end": 40, "heading": "LoRA"}
        ),
        Document("Top-p sampling.", metadata={"source": "b.md"}),
    ]
    asked: list[tuple[str, int]] = []

    def retrieve(query: str, k: int) -> list[Document]:
        asked.append((query, k))
        return docs

    search = next(t for t in builtin_tools(retrieve=retrieve) if t.name == "search_documents")
    out = search.invoke({"query": "lora"})
    assert out.startswith("[1] a.md:10-40 (LoRA)\nLoRA adds low-rank adapters.")
    assert "[2] b.md\nTop-p sampling." in out
    assert asked == [("lora", 4)]
    assert format_snippets([]) == "no relevant passages found"


def test_memory_tools(tmp_path: Path) -> None:
    ltm = LongTermMemory(MemoryDB.open(tmp_path / "m.db"), HashEmbeddings(64))
    tools = {t.name: t for t in builtin_tools(memory=ltm, user_id="alice")}
    assert tools["remember"].invoke({"fact": "My dog is called Bori"}).startswith("ADD")
    assert "Bori" in tools["recall"].invoke({"query": "dog"})
    assert ToolRegistry(tools.values()).is_destructive("forget")
    assert "forgot" in tools["forget"].invoke({"query": "My dog is called Bori"})
    assert ltm.memories("alice") == []
    with pytest.raises(ValueError, match="user_id"):
        builtin_tools(memory=ltm)


def test_current_time_and_list_sources() -> None:
    fixed = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    tools = {t.name: t for t in builtin_tools(clock=lambda: fixed, list_sources=lambda: ["a.md", "b.pdf"])}
    assert tools["current_time"].invoke({}) == "2025-03-01T12:00:00+00:00 (Saturday, UTC)"
    assert tools["current_time"].invoke({"timezone": "Asia/Seoul"}).startswith("2025-03-01T21:00:00+09:00")
    with pytest.raises(ToolError, match="time zone"):
        tools["current_time"].invoke({"timezone": "Mars/Olympus"})
    assert tools["list_sources"].invoke({}) == "a.md\nb.pdf"
