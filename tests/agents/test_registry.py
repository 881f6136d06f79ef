"""ToolRegistry / ToolSession: allowlist, schema validation before running, limits, confirmation, timeouts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool

from saem.agents.registry import ToolRegistry, validate_arguments
from saem.errors import ToolError

pytestmark = pytest.mark.unit


def make_tools() -> tuple[list[BaseTool], list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append({"add": (a, b)})
        return a + b

    @tool
    def wipe(target: str) -> str:
        """Delete everything about target."""
        calls.append({"wipe": target})
        return f"wiped {target}"

    return [add, wipe], calls


def test_allowed_call_runs_and_records() -> None:
    tools, calls = make_tools()
    session = ToolRegistry(tools).session(allow=["add"])
    record = session.call("add", {"a": 2, "b": 3}, "c1")
    assert (record.status, record.output, record.call_id, record.reason) == ("ran", "5", "c1", "")
    assert calls == [{"add": (2, 3)}]
    assert [t.name for t in session.tools] == ["add"]


def test_unknown_and_not_allowed_tools_never_run() -> None:
    tools, calls = make_tools()
    session = ToolRegistry(tools).session(allow=["add"])
    unknown = session.call("rm_rf", {"path": "/"})
    outside = session.call("wipe", {"target": "x"})
    assert (unknown.status, unknown.reason) == ("refused", "unknown_tool")
    assert (outside.status, outside.reason) == ("refused", "not_allowed")
    assert "add" in unknown.output  # the model is told what it may call
    assert calls == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"a": 1}, "b"),  # missing
        ({"a": "one", "b": 2}, "a"),  # wrong type
        ({"a": 1, "b": 2, "c": 3}, "unknown argument"),  # extra key: refused, not dropped
        ("a=1,b=2", "JSON object"),  # not an object at all
    ],
)
def test_schema_violations_are_refused_before_running(args: Any, fragment: str) -> None:
    tools, calls = make_tools()
    record = ToolRegistry(tools).session().call("add", args)
    assert (record.status, record.reason) == ("refused", "invalid_arguments")
    assert fragment in record.output
    assert calls == []


def test_dict_schema_tools_are_checked_too() -> None:
    t = StructuredTool.from_function(
        lambda mode: mode,
        name="mode",
        description="set a mode",
        args_schema={
            "type": "object",
            "properties": {"mode": {"type": "string", "enum": ["a", "b"]}},
            "required": ["mode"],
        },
    )
    assert validate_arguments(t, {"mode": "a"}) == ""
    assert "one of" in validate_arguments(t, {"mode": "z"})
    assert "missing" in validate_arguments(t, {})
    assert "expected string" in validate_arguments(t, {"mode": 3})


def test_max_tool_calls_per_turn_then_reset() -> None:
    tools, calls = make_tools()
    session = ToolRegistry(tools, max_tool_calls=3).session()
    records = [session.call("add", {"a": i, "b": 0}) for i in range(5)]
    assert [r.status for r in records] == ["ran"] * 3 + ["refused"] * 2
    assert {r.reason for r in records[3:]} == {"limit"}
    assert len(calls) == 3 and session.calls_left == 0
    session.begin_turn()
    assert session.call("add", {"a": 1, "b": 1}).status == "ran"


def test_destructive_needs_confirmation_default_refuse() -> None:
    tools, calls = make_tools()
    registry = ToolRegistry(tools, destructive={"wipe"})
    refused = registry.session().call("wipe", {"target": "all"})
    assert (refused.status, refused.reason) == ("refused", "not_confirmed")
    asked: list[tuple[str, dict[str, Any]]] = []

    def yes(name: str, args: dict[str, Any]) -> bool:
        asked.append((name, args))
        return True

    assert registry.session(confirm=yes).call("wipe", {"target": "all"}).status == "ran"
    assert asked == [("wipe", {"target": "all"})]
    assert registry.session(confirm=lambda n, a: 1 / 0 == 0).call("wipe", {"target": "x"}).reason == "not_confirmed"
    assert calls == [{"wipe": "all"}]


def test_destructive_from_tool_metadata() -> None:
    @tool
    def drop(table: str) -> str:
        """Drop a table."""
        return "dropped"

    drop.metadata = {"destructive": True}
    registry = ToolRegistry([drop])
    assert registry.is_destructive("drop")
    assert registry.session().call("drop", {"table": "t"}).reason == "not_confirmed"


def test_timeout_is_reported_failed_and_the_caller_returns() -> None:
    release = threading.Event()

    @tool
    def hang(x: int) -> int:
        """Hangs until released."""
        release.wait(5)
        return x

    session = ToolRegistry([hang], timeout=0.2).session()
    started = time.perf_counter()
    record = session.call("hang", {"x": 1})
    release.set()
    assert time.perf_counter() - started < 2
    assert (record.status, record.reason, record.fatal) == ("failed", "timeout", False)


def test_failures_recoverable_or_fatal() -> None:
    @tool
    def expected(x: int) -> int:
        """Raises a ToolError."""
        raise ToolError("x must be positive", tool="expected")

    @tool
    def lc_error(x: int) -> int:
        """Raises a ToolException."""
        raise ToolException("nope")

    @tool
    def buggy(x: int) -> int:
        """Has a bug."""
        return {}[x]  # type: ignore[no-any-return]

    session = ToolRegistry([expected, lc_error, buggy]).session()
    a, b, c = (session.call(n, {"x": 1}) for n in ("expected", "lc_error", "buggy"))
    assert (a.status, a.fatal, "positive" in a.output) == ("failed", False, True)
    assert (b.status, b.fatal) == ("failed", False)
    assert (c.status, c.reason, c.fatal) == ("failed", "error", True)


def test_output_is_truncated() -> None:
    @tool
    def big() -> str:
        """Returns a lot."""
        return "x" * 10_000

    record = ToolRegistry([big], max_output_chars=500).session().call("big", {})
    assert len(record.output) < 600 and "truncated" in record.output
    assert len(record.summary) <= 200


def test_registry_errors() -> None:
    tools, _ = make_tools()
    registry = ToolRegistry(tools)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(tools[0])
    with pytest.raises(ToolError, match="unregistered"):
        registry.session(allow=["add", "addd"])
    with pytest.raises(ToolError):
        registry.get("nope")
    with pytest.raises(ValueError):
        registry.register(lambda: 1)  # type: ignore[arg-type]
