"""The agent answer strategy: a router (one grammar-constrained choice) or the tool loop.

    session = tool_session("default", retrieve=app.retrieve, memory=deps.ltm, user_id="alice")
    strategy = AgentStrategy(model, session, agent="router", history_turns=settings.history_turns)
    answer = ask_turn(deps, strategy, "What is 17 * 23?", session_id="s1", user_id="alice")
    answer.tool_calls, answer.stop_reason, deps.traces.get(answer.trace_id).steps

The turn around it is the document turn's (``saem.app.turn``): the same history read, answer
language, storage and trace table. The agent gets the session's last ``history_turns`` turns as
plain user/assistant text (tool messages, tool-call-only replies and citation markers left out);
it recalls no memories itself (it has the memory tools). One strategy object per turn: it holds
the tool session (allowlist, confirmation, call limit) of that turn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from saem.agents.builtin import DEFAULT_TOOLS, builtin_tools
from saem.agents.lc_agent import LangChainAgentLoop
from saem.agents.loop import AgentLoop
from saem.agents.registry import ToolRegistry, ToolSession
from saem.agents.router import Router
from saem.app.context import plain_render
from saem.app.turn import Draft, TurnState
from saem.memory.longterm import LongTermMemory
from saem.models.protocols import PromptModel
from saem.text.markers import strip_markers

__all__ = ["AgentStrategy", "plain_turns", "tool_session"]

AGENTS = ("router", "loop")


def tool_session(
    tools: str | Sequence[str],
    *,
    retrieve: Callable[[str, int], list[Document]],
    memory: LongTermMemory,
    user_id: str,
    list_sources: Callable[[], list[str]] | None = None,
    confirm: Callable[[str, dict[str, Any]], bool] | None = None,
) -> ToolSession:
    """A tool session over the built-in tools for one user's turn: ``tools`` is ``"default"``
    (the default allowlist) or the names allowed. 30 s per call, at most 8 calls."""
    registry = ToolRegistry(
        builtin_tools(retrieve=retrieve, memory=memory, user_id=user_id, list_sources=list_sources),
        timeout=30.0,
        max_tool_calls=8,
    )
    allow = [n for n in DEFAULT_TOOLS if n in registry] if tools == "default" else list(tools)
    return registry.session(allow=allow, confirm=confirm)


class AgentStrategy:
    """Answer with tools: ``agent="router"`` (fit for small models) or ``"loop"``. ``ValueError``
    for another name. ``loop`` picks the tool loop's implementation (the ``agent_loop`` setting):
    ``"saem"`` (:class:`AgentLoop`) or ``"langchain"`` (:class:`LangChainAgentLoop`, on
    ``create_agent``); both keep one contract. Refused or failed tool calls are part of the
    answer; an error of the model propagates, so the turn stores nothing."""

    memory = False

    def __init__(
        self, model: BaseChatModel, session: ToolSession, *, agent: str, history_turns: int, loop: str = "saem"
    ) -> None:
        if agent not in AGENTS:
            raise ValueError(f"agent must be 'router' or 'loop', not {agent!r}")
        self.agent, self.session, self.history_turns = agent, session, history_turns
        self.runner: Router | AgentLoop | LangChainAgentLoop
        if agent == "router":
            self.runner = Router(model, session)
        elif loop == "langchain":
            self.runner = LangChainAgentLoop(model, session)
        else:
            self.runner = AgentLoop(model, session)

    def answer(self, state: TurnState) -> Iterator[str | Draft]:
        result = self.runner.run(state.question, history=plain_turns(state.history, self.history_turns))
        tools = self.session.tools if self.agent == "loop" else None
        state.prompt = _render_prompt(self.runner.model, self.runner.last_messages, tools)
        if result.text:
            yield result.text
        yield Draft(result.text, agent=self.agent, result=result)


def plain_turns(messages: Sequence[BaseMessage], turns: int) -> list[BaseMessage]:
    """The last ``turns`` complete turns of ``messages`` as plain user/assistant text messages
    (tool messages, tool-call-only replies and metadata left out; citation markers removed,
    since they pointed at another turn's documents)."""
    pairs: list[list[BaseMessage]] = []
    for m in messages:
        if m.type == "human":
            pairs.append([HumanMessage(m.text)])
        elif m.type == "ai" and m.text.strip() and pairs and len(pairs[-1]) == 1:
            pairs[-1].append(AIMessage(strip_markers(m.text).strip()))
    complete = [p for p in pairs if len(p) == 2]
    return [m for p in complete[-turns:] for m in p] if turns > 0 else []


def _render_prompt(model: Any, messages: Sequence[BaseMessage], tools: Sequence[Any] | None) -> str:
    """The prompt of an agent's last model call as the model renders it (its chat template, with
    the bound tools), else a plain rendering."""
    if not messages:
        return ""
    if isinstance(model, PromptModel):
        try:
            return model.render_prompt(list(messages), tools=tools or None)
        except Exception:  # a prompt that cannot be rendered must not lose the stored turn
            pass
    return plain_render(messages)
