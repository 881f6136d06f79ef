"""The agent loop on LangChain 1.x's standard agent, ``langchain.agents.create_agent``.

Same contract as :class:`saem.agents.loop.AgentLoop` (read its module docstring): the same
``AgentResult``, the same tool-result wrapping, and every tool call — unknown names, arguments
that break the schema, unparseable arguments, calls over the per-turn limit, unconfirmed
destructive calls — goes through :meth:`ToolSession.call`, so the allowlist and the
confirmation hold whatever the model writes. The agent graph brings the loop itself, its
model-call limit (``ModelCallLimitMiddleware``) and the middleware seams; saem's own middleware
records steps and the last prompt, hands tool calls to the session, and ends the run at a fatal
tool failure.

    agent = LangChainAgentLoop(model, registry.session(allow=["calculator"]))
    agent.run("17 times 23?").text

Needs the ``langchain`` package (``pip install 'saem[agents]'``); without it, constructing one
raises ``ConfigError`` saying so. No checkpointer is used: nothing is serialised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from saem.agents.loop import AgentLoop, message_text, tool_result_text
from saem.agents.registry import ToolSession, summarize
from saem.agents.types import AgentResult, AgentStep, ToolCallRecord
from saem.errors import ConfigError
from saem.models.protocols import model_label

__all__ = ["LangChainAgentLoop"]

_RAW = "__saem_raw_arguments__"  # carries an unparseable call's raw text to the session


class LangChainAgentLoop(AgentLoop):
    """``AgentLoop``'s contract (and its constructor), run by ``create_agent``. Not thread-safe
    per instance."""

    def __init__(
        self,
        model: BaseChatModel,
        session: ToolSession,
        *,
        system_prompt: str | None = None,
        max_steps: int = 6,
    ) -> None:
        super().__init__(model, session, system_prompt=system_prompt, max_steps=max_steps)
        try:
            import langchain.agents  # noqa: F401
        except ImportError as err:
            raise ConfigError(
                "the LangChain agent needs the langchain package",
                hint="pip install 'saem[agents]' (or use agent='router' / the built-in loop)",
            ) from err
        self._agent: Any = None
        self._run: _Run | None = None

    def run(self, question: str, *, history: Sequence[BaseMessage] = ()) -> AgentResult:
        """Answer ``question`` (after ``history``), calling tools as the model asks."""
        from langchain.agents import create_agent
        from langchain.agents.middleware import ModelCallLimitMiddleware

        self.session.begin_turn()
        run = self._run = _Run(self)
        if self._agent is None:  # compiled once; the middleware reads the current run
            self._agent = create_agent(
                self.model,
                self.session.tools,
                system_prompt=self.system_prompt,
                middleware=[_middleware(self), ModelCallLimitMiddleware(run_limit=self.max_steps, exit_behavior="end")],
            )
        agent = self._agent
        # one tool call at a time, in the model's order (the session's per-turn limit counts them)
        config = {"recursion_limit": 4 * self.max_steps + 8, "max_concurrency": 1}
        agent.invoke({"messages": [*history, HumanMessage(question)]}, config)
        if run.fatal is not None:
            return AgentResult(f"I could not finish: {run.fatal.summary}", run.records, run.steps, "tool_error")
        if run.model_calls >= self.max_steps and run.last_had_calls:
            text = run.last_text or f"I could not finish within {self.max_steps} steps."
            return AgentResult(text, run.records, run.steps, "max_steps")
        return AgentResult(run.last_text, run.records, run.steps, "answer")


class _Run:
    """What one ``run`` records, and the middleware that records it."""

    def __init__(self, loop: LangChainAgentLoop) -> None:
        self.loop = loop
        self.records: list[ToolCallRecord] = []
        self.steps: list[AgentStep] = []
        self.model_calls = 0
        self.last_text = ""
        self.last_had_calls = False
        self.fatal: ToolCallRecord | None = None
        self.seen_ids: set[str] = set()
        self.name = model_label(loop.model)

    def model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        started = time.perf_counter()
        system = [request.system_message] if request.system_message is not None else []
        self.loop.last_messages = [*system, *request.messages]
        response = handler(request)
        ai = next((m for m in reversed(response.result) if isinstance(m, AIMessage)), AIMessage(""))
        # unparseable calls become calls too, so the session answers them like any other refusal
        raw = [
            {
                "name": c.get("name") or "",
                "args": {_RAW: c.get("args")},
                "id": c.get("id") or f"call_raw_{i}",
                "type": "tool_call",
            }
            for i, c in enumerate(ai.invalid_tool_calls)
        ]
        # the agent graph skips a call whose id was answered before: a repeated id gets a suffix
        calls = [*ai.tool_calls, *raw]
        renamed = [c if c["id"] not in self.seen_ids else {**c, "id": f"{c['id']}_{self.model_calls}"} for c in calls]
        self.seen_ids.update(str(c["id"]) for c in renamed)
        if raw or renamed != calls:
            fixed = ai.model_copy(update={"tool_calls": renamed, "invalid_tool_calls": []})
            response.result = [fixed if m is ai else m for m in response.result]
            ai = fixed
        self.model_calls += 1
        self.last_text = message_text(ai)
        self.last_had_calls = bool(ai.tool_calls)
        detail = self.last_text if not ai.tool_calls else "calls " + ", ".join(c["name"] or "?" for c in ai.tool_calls)
        self.steps.append(AgentStep("model", self.name, summarize(detail), time.perf_counter() - started))
        return response

    def tool_call(self, call: dict[str, Any]) -> ToolMessage:
        args = call.get("args")
        if isinstance(args, dict) and set(args) == {_RAW}:
            args = args[_RAW]
        call_id = call.get("id") or f"call_{self.model_calls}_{len(self.records)}"
        name = str(call.get("name") or "")
        if self.fatal is not None:  # a sibling of a fatal call: not run, not recorded (as in AgentLoop)
            return ToolMessage(content="not run: the turn stopped", tool_call_id=call_id, name=name, status="error")
        record = self.loop.session.call(name, args, call_id)
        self.records.append(record)
        self.steps.append(AgentStep("tool", record.name, f"{record.status}: {record.summary}", record.seconds))
        if record.fatal:
            self.fatal = record
        return ToolMessage(
            content=tool_result_text(record),
            tool_call_id=record.call_id,
            name=record.name,
            status="success" if record.ok else "error",
        )




def _middleware(loop: LangChainAgentLoop) -> Any:
    """saem's middleware: records steps, routes tool calls through the session, and ends the
    run at a fatal tool failure — all on ``loop``'s current run."""
    from langchain.agents.middleware import AgentMiddleware, hook_config

    def current() -> _Run:
        assert loop._run is not None, "the middleware runs only inside LangChainAgentLoop.run"
        return loop._run

    class SaemSteps(AgentMiddleware):
        @hook_config(can_jump_to=["end"])
        def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
            return {"jump_to": "end"} if current().fatal is not None else None

        def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
            return current().model_call(request, handler)

        def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> ToolMessage:
            return current().tool_call(request.tool_call)

    return SaemSteps()
