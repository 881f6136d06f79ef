"""Built-in tools, each built from what it needs (no globals, no hidden I/O).

    tools = builtin_tools(retrieve=app.retrieve, memory=ltm, user_id="alice",
                          list_sources=lambda: [s.path for s in app.stats().sources], roots=["docs/"])
    registry = ToolRegistry(tools)      # forget carries metadata {"destructive": True}

=================  =========================================================================
search_documents   ``retrieve(query, k) -> list[Document]``; returns ``[n] source:start-end`` snippets
remember/recall    over a :class:`~saem.memory.longterm.LongTermMemory` for one ``user_id``
forget             deletes memories close to a query — destructive (needs confirmation)
calculator         arithmetic parsed with ``ast`` into a whitelist; never ``eval``
current_time       ISO time now (UTC or an IANA zone); ``clock`` injectable for tests
list_sources       names the ingested sources via an injected callable
read_file          a UTF-8 text file confined to configured roots, size-capped
=================  =========================================================================

Tools raise ``ToolError`` for bad input (the registry shows the message to the model).
"""

from __future__ import annotations

import ast
import math
import operator
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from saem.errors import ToolError

if TYPE_CHECKING:
    from saem.memory.longterm import LongTermMemory

__all__ = [
    "Retrieve",
    "builtin_tools",
    "search_documents_tool",
    "memory_tools",
    "calculator_tool",
    "current_time_tool",
    "list_sources_tool",
    "read_file_tool",
    "calculate",
    "format_snippets",
    "DEFAULT_TOOLS",
]

Retrieve = Callable[[str, int], Sequence[Document]]

DEFAULT_TOOLS = ("search_documents", "calculator", "current_time", "list_sources", "recall", "remember")
"""What ``tools="default"`` allows: read-only tools plus ``remember`` (never ``forget``/``read_file``)."""


def builtin_tools(
    *,
    retrieve: Retrieve | None = None,
    memory: LongTermMemory | None = None,
    user_id: str | None = None,
    list_sources: Callable[[], Iterable[str]] | None = None,
    roots: Sequence[str | Path] = (),
    clock: Callable[[], datetime] | None = None,
) -> list[BaseTool]:
    """Every built-in tool whose dependencies are given (calculator and current_time always)."""
    tools: list[BaseTool] = []
    if retrieve is not None:
        tools.append(search_documents_tool(retrieve))
    tools += [calculator_tool(), current_time_tool(clock)]
    if list_sources is not None:
        tools.append(list_sources_tool(list_sources))
    if memory is not None:
        if user_id is None:
            raise ValueError("memory tools need a user_id")
        tools += memory_tools(memory, user_id)
    if roots:
        tools.append(read_file_tool(roots))
    return tools


# --- search ------------------------------------------------------------------------------------


class _SearchArgs(BaseModel):
    query: str = Field(description="what to look for in the user's documents", min_length=1, max_length=500)


def format_snippets(docs: Sequence[Document], *, max_chars: int = 600) -> str:
    """``[n] source:start-end (heading)`` then the text, one block per document."""
    if not docs:
        return "no relevant passages found"
    blocks = []
    for n, doc in enumerate(docs, 1):
        meta = doc.metadata or {}
        where = str(meta.get("source", "?"))
        if meta.get("start") is not None and meta.get("end") is not None:
            where += f":{meta['start']}-{meta['end']}"
        if meta.get("heading"):
            where += f" ({meta['heading']})"
        text = " ".join(doc.page_content.split())
        blocks.append(f"[{n}] {where}\n{text[:max_chars]}{'…' if len(text) > max_chars else ''}")
    return "\n\n".join(blocks)


def search_documents_tool(retrieve: Retrieve, *, k: int = 4, max_chars: int = 600) -> BaseTool:
    """``search_documents(query)``: the ``k`` best passages as cited snippets (see ``format_snippets``)."""

    def search_documents(query: str) -> str:
        return format_snippets(list(retrieve(query, k)), max_chars=max_chars)

    return StructuredTool.from_function(
        search_documents,
        name="search_documents",
        description="Search the user's documents. Returns numbered passages with their source; cite them as [n].",
        args_schema=_SearchArgs,
    )


# --- memory ------------------------------------------------------------------------------------


class _RememberArgs(BaseModel):
    fact: str = Field(description="one short fact about the user to remember", min_length=1, max_length=500)


class _RecallArgs(BaseModel):
    query: str = Field(description="what to recall about the user", min_length=1, max_length=500)


class _ForgetArgs(BaseModel):
    query: str = Field(description="the fact to forget", min_length=1, max_length=500)


def memory_tools(memory: LongTermMemory, user_id: str, *, k: int = 5) -> list[BaseTool]:
    """``remember(fact)``, ``recall(query)`` and ``forget(query)`` for one user (forget is destructive)."""

    def remember(fact: str) -> str:
        decision = memory.add(user_id, fact)
        return f"{decision.action}: {decision.text}"

    def recall(query: str) -> str:
        found = memory.recall(user_id, query, k)
        return "\n".join(f"- {m.text}" for m in found) or "nothing remembered about that"

    def forget(query: str) -> str:
        removed = memory.forget(user_id, query=query)
        return "\n".join(f"forgot: {m.text}" for m in removed) or "no memory close enough to forget"

    return [
        StructuredTool.from_function(
            remember, name="remember", args_schema=_RememberArgs, description="Remember a durable fact about the user."
        ),
        StructuredTool.from_function(
            recall, name="recall", args_schema=_RecallArgs, description="Recall remembered facts about the user."
        ),
        StructuredTool.from_function(
            forget,
            name="forget",
            args_schema=_ForgetArgs,
            metadata={"destructive": True},
            description="Delete remembered facts about the user (asks the user first).",
        ),
    ]


# --- calculator --------------------------------------------------------------------------------

_MAX_EXPRESSION = 300
_MAX_INT_BITS = 4096  # ~1233 decimal digits: bounds the time and memory of every step
_MAX_EXPONENT = 10_000
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin,
    "cos": math.cos, "tan": math.tan, "abs": abs, "round": round,
}  # fmt: skip
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic: numbers, ``+ - * / // % **``, unary ``+ -``, parentheses, and
    ``sqrt log log10 exp sin cos tan abs round``, ``pi e tau``. Raises ``ToolError`` for anything
    else (names, attributes, calls of other functions, lambdas, strings, ...), for results above
    4096 bits or exponents above 10 000, and for math errors. Never calls ``eval``."""
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError(f"expression longer than {_MAX_EXPRESSION} characters", tool="calculator")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise ToolError(f"not an arithmetic expression: {expression!r}", tool="calculator") from err
    try:
        return _eval(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError, RecursionError) as err:
        raise ToolError(f"cannot compute {expression!r}: {err}", tool="calculator") from err


def _eval(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and len(node.args) <= 2
    ):
        args = [_eval(a) for a in node.args]
        return _bounded(_FUNCTIONS[node.func.id](*args))
    raise ToolError(f"not allowed in a calculation: {ast.unparse(node)[:60]!r}", tool="calculator")


def _check_power(base: int | float, exponent: int | float) -> None:
    if abs(exponent) > _MAX_EXPONENT:
        raise ToolError(f"exponent {exponent} is too large (limit {_MAX_EXPONENT})", tool="calculator")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > _MAX_INT_BITS:
            raise ToolError("result too large", tool="calculator")


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolError("complex result", tool="calculator")
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise ToolError("result too large", tool="calculator")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("result is not a finite number", tool="calculator")
    return value  # type: ignore[no-any-return]


class _CalcArgs(BaseModel):
    expression: str = Field(
        description="an arithmetic expression, e.g. 2 * (3 + 4) or sqrt(2)", min_length=1, max_length=_MAX_EXPRESSION
    )


def calculator_tool() -> BaseTool:
    """``calculator(expression)`` over :func:`calculate`; floats print with 12 significant digits."""

    def calculator(expression: str) -> str:
        value = calculate(expression)
        return str(value) if isinstance(value, int) else f"{value:.12g}"

    return StructuredTool.from_function(
        calculator, name="calculator", args_schema=_CalcArgs, description="Evaluate an arithmetic expression exactly."
    )


# --- time and sources --------------------------------------------------------------------------


class _TimeArgs(BaseModel):
    # the pattern keeps a grammar-constrained small model from writing prose into the zone name
    timezone: str = Field(
        default="UTC", description="an IANA time zone such as Asia/Seoul", pattern=r"^[A-Za-z][A-Za-z0-9_+/-]{0,39}$"
    )


def current_time_tool(clock: Callable[[], datetime] | None = None) -> BaseTool:
    """``current_time(timezone="UTC")``: ISO 8601 with the weekday. ``clock`` returns an aware
    datetime (default: the system clock)."""

    def current_time(timezone: str = "UTC") -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        now = clock() if clock is not None else datetime.now(UTC)
        try:
            zone = UTC if timezone.upper() in ("UTC", "Z", "") else ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ToolError(f"unknown time zone {timezone!r}", tool="current_time") from err
        local = now.astimezone(zone)
        return f"{local.isoformat(timespec='seconds')} ({local.strftime('%A')}, {timezone or 'UTC'})"

    return StructuredTool.from_function(
        current_time, name="current_time", args_schema=_TimeArgs, description="The current date and time."
    )


class _NoArgs(BaseModel):
    pass


def list_sources_tool(list_sources: Callable[[], Iterable[str]], *, limit: int = 200) -> BaseTool:
    """``list_sources()``: the ingested sources, one per line (at most ``limit``)."""

    def list_sources_() -> str:
        names = [str(s) for s in list_sources()]
        more = f"\n… and {len(names) - limit} more" if len(names) > limit else ""
        return ("\n".join(names[:limit]) + more) if names else "no documents are ingested"

    return StructuredTool.from_function(
        list_sources_,
        name="list_sources",
        args_schema=_NoArgs,
        description="List the documents that have been ingested.",
    )


# --- read_file ---------------------------------------------------------------------------------


class _ReadArgs(BaseModel):
    path: str = Field(description="a file path relative to an allowed folder", min_length=1, max_length=1000)


def resolve_confined(path: str, roots: Sequence[Path]) -> Path:
    """The real path of ``path`` if it is a regular file inside one of ``roots``, else ``ToolError``.

    A relative path is tried under each root in order. Refused: ``..`` anywhere, an absolute path
    outside every root, anything whose real path (``resolve(strict=True)``, so every symlink
    followed) leaves its root, and anything that is not a regular file (directories, FIFOs,
    devices, sockets)."""
    pure = PurePath(path)
    if ".." in pure.parts:
        raise ToolError(f"refused {path!r}: '..' is not allowed", tool="read_file")
    candidates = [Path(pure)] if pure.is_absolute() else [root / pure for root in roots]
    escaped = False
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            continue
        if not any(real.is_relative_to(root) for root in roots):
            escaped = True  # a symlink out of the root, or an absolute path elsewhere
            continue
        if not stat.S_ISREG(real.stat().st_mode):
            raise ToolError(f"refused {path!r}: not a regular file", tool="read_file")
        return real
    why = "it is outside the allowed folders" if escaped else "no such file inside the allowed folders"
    raise ToolError(f"refused {path!r}: {why}", tool="read_file")


def read_file_tool(roots: Sequence[str | Path], *, max_bytes: int = 200_000) -> BaseTool:
    """``read_file(path)``: a UTF-8 text file confined to ``roots`` (see :func:`resolve_confined`),
    at most ``max_bytes``. The file is opened ``O_NOFOLLOW | O_NONBLOCK`` and checked again with
    ``fstat``, so a file swapped for a symlink or FIFO after the check is refused too."""
    real_roots = [Path(r).resolve(strict=True) for r in roots]
    if not real_roots:
        raise ValueError("read_file needs at least one root folder")

    def read_file(path: str) -> str:
        real = resolve_confined(path, real_roots)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(real, flags)
        except OSError as err:
            raise ToolError(f"cannot open {path!r}: {err.strerror}", tool="read_file") from err
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ToolError(f"refused {path!r}: not a regular file", tool="read_file")
            if info.st_size > max_bytes:
                raise ToolError(f"refused {path!r}: {info.st_size} bytes (limit {max_bytes})", tool="read_file")
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ToolError(f"refused {path!r}: larger than {max_bytes} bytes", tool="read_file")
        if b"\x00" in data:
            raise ToolError(f"refused {path!r}: a binary file", tool="read_file")
        return data.decode("utf-8", errors="replace")

    return StructuredTool.from_function(
        read_file, name="read_file", args_schema=_ReadArgs, description="Read a text file from the allowed folders."
    )
