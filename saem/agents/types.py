"""What an agent run reports: one record per tool call, one step per model or tool action.

    result = AgentLoop(model, session).run("What is 2**10?")
    result.text                              # the final answer
    [(c.name, c.status) for c in result.tool_calls]   # [('calculator', 'ran')]
    result.stop_reason                       # 'answer' | 'max_steps' | 'tool_error' | 'model_error'
    app.ask(q, tools="default")              # through the facade: an ``Answer`` with these fields, stored and traced

All types are frozen dataclasses (plain data: safe to log, compare, serialise with ``asdict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ToolStatus", "RefusalReason", "ToolCallRecord", "AgentStep", "AgentResult", "StopReason"]

ToolStatus = Literal["ran", "refused", "failed"]
"""``ran``: the tool ran and returned; ``refused``: it never ran (see ``reason``); ``failed``: it
ran and raised, or timed out."""

RefusalReason = Literal[
    "unknown_tool",  # no tool by that name is registered
    "not_allowed",  # registered, but not in this session's allowlist
    "invalid_arguments",  # the arguments do not match the tool's schema
    "limit",  # max_tool_calls for this turn was reached
    "not_confirmed",  # a destructive tool and the confirm callback said no (or there is none)
    "timeout",  # ran longer than the registry's timeout (status failed)
    "error",  # the tool raised (status failed)
    "",  # ran
]

StopReason = Literal["answer", "max_steps", "tool_error", "model_error"]


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call the model asked for, and what happened to it.

    ``summary`` is a short (≤ 200 characters) one-line version of ``output``; ``output`` is the
    full text sent back to the model (the result, or the error it was shown). ``fatal`` marks a
    failure the loop does not recover from (the tool raised something other than ``ToolError``,
    ``ToolException`` or ``ValueError``).
    """

    name: str
    arguments: dict[str, Any]
    status: ToolStatus
    summary: str
    reason: RefusalReason = ""
    call_id: str = ""
    output: str = ""
    seconds: float = 0.0
    fatal: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ran"


@dataclass(frozen=True)
class AgentStep:
    """One step of a run: a model call (``kind="model"``, ``detail`` = its text or chosen action),
    a tool call (``kind="tool"``, ``detail`` = the record's summary), or the router's choice
    (``kind="route"``). ``seconds`` is wall time."""

    kind: Literal["model", "tool", "route"]
    name: str
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class AgentResult:
    """The outcome of one agent turn: the answer ``text``, every tool call in order, every step.

    What ``Router``, ``AgentLoop`` and ``LangChainAgentLoop`` return. Through ``Saem.ask`` an agent
    turn is an ``Answer`` carrying these fields (``tool_calls``, ``steps``, ``stop_reason``,
    ``choice``) and the stored turn's ``trace_id``; a runner used on its own leaves ``trace_id`` ``""``.
    """

    text: str
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    steps: list[AgentStep] = field(default_factory=list)
    stop_reason: StopReason = "answer"
    choice: dict[str, Any] | None = None
    """Router mode: the structured choice the model made (None in loop mode, or if it failed)."""
    trace_id: str = ""
