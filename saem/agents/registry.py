"""Tools by name, a per-session allowlist, and one guarded way to call them.

    registry = ToolRegistry([calculator_tool(), forget_tool], destructive={"forget"})
    session = registry.session(allow=["calculator"], confirm=None, max_tool_calls=8)
    record = session.call("calculator", {"expression": "2 + 2"})
    record.status, record.output               # ('ran', '4')
    session.call("forget", {"query": "*"}).reason  # 'not_allowed' — nothing ran

Contract of :meth:`ToolSession.call` — it never raises for anything the model asked; it returns a
:class:`~saem.agents.types.ToolCallRecord`. The checks, in order, each refusing with a reason:

1. ``limit`` — more than ``max_tool_calls`` calls since :meth:`ToolSession.begin_turn` (every
   request counts, refused ones too, so a model cannot spin on bad calls);
2. ``unknown_tool`` / ``not_allowed`` — the name is not registered / not in the allowlist;
3. ``invalid_arguments`` — the arguments are not an object matching the tool's model-facing
   schema (``tool.tool_call_schema``: pydantic, or a JSON-schema dict); unknown keys are refused,
   not dropped. Nothing runs before this check passes;
4. ``not_confirmed`` — the tool is destructive (``destructive=`` at registration, or
   ``tool.metadata["destructive"]``) and ``confirm(name, arguments)`` did not return True. The
   default ``confirm`` is None: destructive calls are refused;
5. the tool runs in a worker thread for at most ``timeout`` seconds. A timed-out call is reported
   ``failed``/``timeout``. **Python threads cannot be killed**: a timed-out tool keeps running in
   its (daemon) thread until it returns on its own; its result is discarded. Tools that can hang
   for long should enforce their own limits (the built-ins do).

A tool that raises ``ToolError``, LangChain's ``ToolException`` or ``ValueError`` is ``failed``
and the model is shown the message; any other exception is ``failed`` with ``fatal=True`` (a
bug or a broken environment, which the agent loop does not try to talk its way around).

Thread-safety: a registry is read-only after setup and may be shared; a session keeps a per-turn
counter and is meant for one conversation at a time (its counter is lock-protected anyway).
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ValidationError

from saem.agents.types import RefusalReason, ToolCallRecord
from saem.errors import ToolError

__all__ = ["Confirm", "ToolRegistry", "ToolSession", "summarize"]

Confirm = Callable[[str, dict[str, Any]], bool]
"""``confirm(tool_name, arguments) -> bool``: asked before a destructive tool runs."""

_SUMMARY_CHARS = 200


def summarize(text: str, limit: int = _SUMMARY_CHARS) -> str:
    """One line of at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ToolRegistry:
    """LangChain tools (``@tool`` functions or ``BaseTool`` objects) by name.

        registry = ToolRegistry(builtin_tools(retrieve=app.retrieve), timeout=10)
        registry.register(my_tool, destructive=True)
        session = registry.session(allow=["search_documents", "calculator"])
        llm = model.bind_tools(session.tools)

    ``timeout`` (seconds) and ``max_tool_calls`` (per turn) are defaults for sessions;
    ``max_output_chars`` truncates what a tool returns before the model sees it.
    """

    def __init__(
        self,
        tools: Iterable[BaseTool] = (),
        *,
        destructive: Iterable[str] = (),
        timeout: float = 30.0,
        max_tool_calls: int = 8,
        max_output_chars: int = 4000,
    ) -> None:
        if timeout <= 0 or max_tool_calls < 0 or max_output_chars < 100:
            raise ValueError("timeout must be > 0, max_tool_calls >= 0, max_output_chars >= 100")
        self._tools: dict[str, BaseTool] = {}
        self._destructive: set[str] = set(destructive)
        self.timeout = timeout
        self.max_tool_calls = max_tool_calls
        self.max_output_chars = max_output_chars
        for tool in tools:
            self.register(tool)

    def register(self, tool: BaseTool, *, destructive: bool | None = None) -> BaseTool:
        """Add ``tool`` under ``tool.name`` (``ValueError`` if the name is taken or not a BaseTool).
        ``destructive=True`` requires confirmation; None keeps what ``tool.metadata`` says."""
        if not isinstance(tool, BaseTool):
            raise ValueError(f"not a LangChain tool: {tool!r} (decorate it with @tool)")
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        if destructive is not None:
            (self._destructive.add if destructive else self._destructive.discard)(tool.name)
        return tool

    @property
    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def get(self, name: str) -> BaseTool:
        """The tool called ``name``; ``ToolError`` if there is none."""
        try:
            return self._tools[name]
        except KeyError:
            raise ToolError(f"no tool named {name!r}", tool=name, hint=f"registered: {self.names}") from None

    def is_destructive(self, name: str) -> bool:
        """True when the tool needs confirmation (registry flag or ``metadata["destructive"]``)."""
        if name in self._destructive:
            return True
        tool = self._tools.get(name)
        return bool(tool is not None and (tool.metadata or {}).get("destructive"))

    def session(
        self,
        allow: Iterable[str] | None = None,
        *,
        confirm: Confirm | None = None,
        max_tool_calls: int | None = None,
        timeout: float | None = None,
    ) -> ToolSession:
        """A session that may call the tools named in ``allow`` (None: every registered tool).

        Raises ``ToolError`` for a name in ``allow`` that is not registered (a typo would
        otherwise silently disable a tool)."""
        names = self.names if allow is None else list(dict.fromkeys(allow))
        missing = [n for n in names if n not in self._tools]
        if missing:
            raise ToolError(
                f"cannot allow unregistered tools {missing}", tool=missing[0], hint=f"registered: {self.names}"
            )
        return ToolSession(
            self,
            names,
            confirm=confirm,
            max_tool_calls=self.max_tool_calls if max_tool_calls is None else max_tool_calls,
            timeout=self.timeout if timeout is None else timeout,
        )


class ToolSession:
    """One conversation's view of a registry: its allowlist, confirm callback and turn counter.
    Built by :meth:`ToolRegistry.session`; see the module docstring for :meth:`call`."""

    def __init__(
        self,
        registry: ToolRegistry,
        allowed: Sequence[str],
        *,
        confirm: Confirm | None,
        max_tool_calls: int,
        timeout: float,
    ) -> None:
        self.registry = registry
        self.allowed: tuple[str, ...] = tuple(allowed)
        self.confirm = confirm
        self.max_tool_calls = max_tool_calls
        self.timeout = timeout
        self._count = 0
        self._lock = threading.Lock()

    @property
    def tools(self) -> list[BaseTool]:
        """The allowed tools (what to ``bind_tools``), in allowlist order."""
        return [self.registry.get(n) for n in self.allowed]

    def begin_turn(self) -> None:
        """Reset the per-turn call counter."""
        with self._lock:
            self._count = 0

    @property
    def calls_left(self) -> int:
        with self._lock:
            return max(0, self.max_tool_calls - self._count)

    def check(self, name: str, arguments: Any) -> tuple[RefusalReason, str]:
        """``("", "")`` when ``name`` is allowed and ``arguments`` match its schema, else the
        refusal reason and the message for the model. Counts nothing, runs nothing."""
        if name not in self.registry:
            return "unknown_tool", f"unknown tool {name!r}; the tools you may call are: {list(self.allowed)}"
        if name not in self.allowed:
            return "not_allowed", f"tool {name!r} is not allowed here; the tools you may call are: {list(self.allowed)}"
        problem = validate_arguments(self.registry.get(name), arguments)
        if problem:
            return "invalid_arguments", f"invalid arguments for {name}: {problem}"
        return "", ""

    def call(self, name: str, arguments: Any, call_id: str = "") -> ToolCallRecord:
        """Check, confirm and run one call; never raises for the model's mistakes (see module doc)."""
        args: dict[str, Any] = arguments if isinstance(arguments, dict) else {"_raw": arguments}
        with self._lock:
            self._count += 1
            over = self._count > self.max_tool_calls
        if over:
            msg = f"tool call limit reached ({self.max_tool_calls} per turn): {name} was not run; answer now"
            return _refused(name, args, call_id, "limit", msg)
        reason, msg = self.check(name, arguments)
        if reason:
            return _refused(name, args, call_id, reason, msg)
        if self.registry.is_destructive(name) and not self._confirmed(name, args):
            msg = f"{name} changes or deletes data and was not confirmed by the user; it was not run"
            return _refused(name, args, call_id, "not_confirmed", msg)
        return self._run(self.registry.get(name), args, call_id)

    def _confirmed(self, name: str, args: dict[str, Any]) -> bool:
        if self.confirm is None:
            return False
        try:
            return self.confirm(name, dict(args)) is True
        except Exception:  # a broken confirm dialog is a "no"
            return False

    def _run(self, tool: BaseTool, args: dict[str, Any], call_id: str) -> ToolCallRecord:
        box: dict[str, Any] = {}
        done = threading.Event()
        context = contextvars.copy_context()  # callbacks/tracing context follows the call

        def target() -> None:
            try:
                box["value"] = context.run(tool.invoke, dict(args))
            except BaseException as err:  # reported below, in the caller's thread
                box["error"] = err
            finally:
                done.set()

        started = time.perf_counter()
        worker = threading.Thread(target=target, name=f"saem-tool-{tool.name}", daemon=True)
        worker.start()
        finished = done.wait(self.timeout)
        seconds = time.perf_counter() - started
        if not finished:
            msg = f"{tool.name} timed out after {self.timeout:g} s; its result is discarded"
            return ToolCallRecord(tool.name, args, "failed", summarize(msg), "timeout", call_id, msg, seconds)
        error = box.get("error")
        if error is not None:
            fatal = not isinstance(error, ToolError | ToolException | ValueError)
            detail = error.message if isinstance(error, ToolError) else str(error) or type(error).__name__
            msg = f"{tool.name} failed: {detail}"
            return ToolCallRecord(tool.name, args, "failed", summarize(msg), "error", call_id, msg, seconds, fatal)
        output = _text(box.get("value"), self.registry.max_output_chars)
        return ToolCallRecord(tool.name, args, "ran", summarize(output), "", call_id, output, seconds)


def _refused(name: str, args: dict[str, Any], call_id: str, reason: RefusalReason, msg: str) -> ToolCallRecord:
    return ToolCallRecord(name, args, "refused", summarize(msg), reason, call_id, msg)


def _text(value: Any, limit: int) -> str:
    if isinstance(value, str):
        text = value
    elif hasattr(value, "content") and isinstance(value.content, str):  # a ToolMessage
        text = value.content
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > limit:
        text = text[:limit] + f"\n[… truncated: {len(text) - limit} more characters]"
    return text


# --- argument validation -----------------------------------------------------------------------


def tool_json_schema(tool: BaseTool) -> dict[str, Any]:
    """The JSON schema of the arguments the model may pass (injected arguments excluded)."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    return {"type": "object", "properties": {}}


def validate_arguments(tool: BaseTool, arguments: Any) -> str:
    """Why ``arguments`` do not fit ``tool``'s schema, or ``""`` when they do.

    Unknown keys are refused (pydantic would silently drop them). Pydantic schemas validate
    fully (lax mode: ``"3"`` is accepted for an integer); dict schemas get a shallow check of
    required keys, JSON types and enums."""
    if not isinstance(arguments, dict):
        return f"arguments must be a JSON object, got {type(arguments).__name__}"
    schema = tool.tool_call_schema
    json_schema = tool_json_schema(tool)
    known = set((json_schema.get("properties") or {}).keys())
    extra = sorted(set(arguments) - known)
    if extra:
        return f"unknown argument(s) {extra}; expected {sorted(known) or 'no arguments'}"
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            schema.model_validate(arguments)
        except ValidationError as err:
            return "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in err.errors()[:5]
            )
        return ""
    return _check_dict_schema(json_schema, arguments)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,), "null": (type(None),),
}  # fmt: skip


def _check_dict_schema(schema: dict[str, Any], args: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties") or {}
    missing = [k for k in schema.get("required", []) if k not in args]
    if missing:
        return f"missing required argument(s) {missing}"
    for key, value in args.items():
        spec = props.get(key) or {}
        kind = spec.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if kind else []
        if kinds and not any(_is_type(value, k) for k in kinds):
            return f"{key}: expected {kind}, got {type(value).__name__}"
        if "enum" in spec and value not in spec["enum"]:
            return f"{key}: must be one of {spec['enum']}"
    return ""


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False  # JSON booleans are not numbers
    return isinstance(value, _JSON_TYPES.get(kind, (object,)))
