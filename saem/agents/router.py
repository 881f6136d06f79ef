"""Router mode, for small models: one grammar-constrained choice, at most one tool, one answer.

    session = ToolRegistry(builtin_tools(retrieve=app.retrieve)).session(allow=["search_documents", "calculator"])
    router = Router(model, session)
    result = router.run("What is 17 * 23?")
    result.choice      # {'action': 'use_tool', 'tool': 'calculator', 'arguments': {'expression': '17 * 23'}}
    result.text        # the answer, written with the tool result in view

Why: a 135M model rarely drives a multi-step tool loop well, but it can pick one of a few options
when a grammar makes every other output impossible. The choice schema (:meth:`Router.choice_schema`)
is a pydantic union built from the session's allowlist::

    {"choice": {"action": "answer_directly"}}
    {"choice": {"action": "search_documents", "query": "..."}}          # if search_documents is allowed
    {"choice": {"action": "use_tool", "tool": <Literal of allowed names>, "arguments": <that tool's schema>}}

so under ``LlamaCppChatModel`` (``with_structured_output(method="json_schema")``) the model can
only name an allowed tool with arguments of the right shape. The chosen call still goes through
:meth:`ToolSession.call` (limit, destructive confirmation, timeout), and its result reaches the
answering call as data (``<tool_result>`` + notice), never as instructions.

Contract: exactly two model calls per run (choose, answer) and at most one tool call; if the
choice does not parse (models without a grammar), the router answers directly and says so in
``steps``; a fatal tool failure stops the run with ``stop_reason="tool_error"``. ``last_messages``
holds the messages of the most recent model call (the answering one), for tracing the prompt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Literal, Union

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, create_model

from saem.agents.extract import structured_call
from saem.agents.loop import DATA_NOTICE, message_text, wrap_data
from saem.agents.registry import ToolSession, summarize
from saem.agents.types import AgentResult, AgentStep, ToolCallRecord
from saem.models.protocols import model_label

__all__ = ["Router", "ANSWER_PROMPT"]

SEARCH = "search_documents"

ANSWER_PROMPT = (
    "You are a helpful assistant. Answer the user's question briefly, in the language of the question. "
    "If a tool result is given, base the answer on it and cite passages as [n]; if it does not help, say so."
)

_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "calculator": ("How much is 12 times 7?",
                   {"action": "use_tool", "tool": "calculator", "arguments": {"expression": "12 * 7"}}),
    "current_time": ("What day is it today?",
                     {"action": "use_tool", "tool": "current_time", "arguments": {"timezone": "UTC"}}),
    SEARCH: ("What does my report say about the budget?", {"action": SEARCH, "query": "report budget"}),
    "": ("Hello! Who are you?", {"action": "answer_directly"}),
}  # fmt: skip


class _AnswerDirectly(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["answer_directly"]


class _SearchDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["search_documents"]
    query: str = Field(min_length=1, max_length=200)


def _use_tool_model(tool: BaseTool) -> type[BaseModel]:
    args: Any = tool.tool_call_schema
    if not (isinstance(args, type) and issubclass(args, BaseModel)):
        args = dict[str, Any]
    name_type: Any = Literal[tool.name]
    action_type: Any = Literal["use_tool"]
    return create_model(
        f"Use_{tool.name}",
        __config__=ConfigDict(extra="forbid"),
        action=(action_type, ...),
        tool=(name_type, ...),
        arguments=(args, ...),
    )


class Router:
    """Choose → (run one tool) → answer. See the module docstring for the contract.

    ``system_prompt`` replaces the generated routing prompt; ``answer_prompt`` the answering one;
    ``examples=False`` leaves the few-shot examples out of the routing prompt.
    """

    def __init__(
        self,
        model: BaseChatModel,
        session: ToolSession,
        *,
        system_prompt: str | None = None,
        answer_prompt: str = ANSWER_PROMPT,
        examples: bool = True,
    ) -> None:
        self.model = model
        self.session = session
        self.answer_prompt = answer_prompt
        self.examples = examples
        self._schema = self._build_schema()
        self.system_prompt = system_prompt or self._routing_prompt()
        self.last_messages: list[BaseMessage] = []
        """The messages of the most recent model call (``[]`` before the first run)."""

    @property
    def choice_schema(self) -> type[BaseModel]:
        """The pydantic model of the choice: ``{"choice": <one of the allowed actions>}``."""
        return self._schema

    def _tools(self) -> list[BaseTool]:
        return [t for t in self.session.tools if t.name != SEARCH]

    def _build_schema(self) -> type[BaseModel]:
        options: list[Any] = [_AnswerDirectly]
        if SEARCH in self.session.allowed:
            options.append(_SearchDocuments)
        options += [_use_tool_model(t) for t in self._tools()]
        union: Any = options[0] if len(options) == 1 else Union[tuple(options)]  # noqa: UP007
        return create_model("RouterChoice", __config__=ConfigDict(extra="forbid"), choice=(union, ...))

    def _routing_prompt(self) -> str:
        lines = [
            "Decide how to handle the user's message and reply with JSON only. The options:",
            '- {"choice": {"action": "answer_directly"}}: greetings, chit-chat, general knowledge.',
        ]
        if SEARCH in self.session.allowed:
            lines.append(
                '- {"choice": {"action": "search_documents", "query": "..."}}: questions about '
                "the user's own documents, notes or files."
            )
        tools = self._tools()
        if tools:
            lines.append('- {"choice": {"action": "use_tool", "tool": "<name>", "arguments": {...}}} with one of:')
            for t in tools:
                params = ", ".join(_tool_params(t))
                lines.append(f"  - {t.name}({params}): {t.description}")
        if self.examples:
            lines.append("Examples:")
            allowed = {"", *self.session.allowed}
            for key, (question, choice) in _EXAMPLES.items():
                if key in allowed:
                    lines.append(f"User: {question}\nJSON: {json.dumps({'choice': choice})}")
        return "\n".join(lines)

    def run(self, question: str, *, history: Sequence[BaseMessage] = ()) -> AgentResult:
        """Route ``question``, run the chosen tool (if any), and answer. Two model calls."""
        self.session.begin_turn()
        steps: list[AgentStep] = []
        records: list[ToolCallRecord] = []
        started = time.perf_counter()
        messages = [SystemMessage(self.system_prompt), *history, HumanMessage(question)]
        self.last_messages = list(messages)
        parsed, raw, error = structured_call(self.model, self._schema, messages)
        choice: dict[str, Any] | None = None
        if parsed is None:
            detail = f"invalid choice ({summarize(error, 120)}); answering directly"
        else:
            choice = parsed.model_dump()["choice"]
            detail = json.dumps(choice, ensure_ascii=False)
        steps.append(AgentStep("route", "router", summarize(detail), time.perf_counter() - started))

        record: ToolCallRecord | None = None
        if choice is not None and choice["action"] == SEARCH:
            record = self.session.call(SEARCH, {"query": choice.get("query") or question}, "route_0")
        elif choice is not None and choice["action"] == "use_tool":
            record = self.session.call(choice["tool"], choice.get("arguments") or {}, "route_0")
        if record is not None:
            records.append(record)
            steps.append(AgentStep("tool", record.name, f"{record.status}: {record.summary}", record.seconds))
            if record.fatal:
                return AgentResult(f"I could not finish: {record.summary}", records, steps, "tool_error", choice)

        started = time.perf_counter()
        prompt = question
        if record is not None:
            status = "ok" if record.ok else f"{record.status}:{record.reason}"
            data = wrap_data("tool_result", record.output, name=record.name, status=status)
            prompt = f"{data}\n{DATA_NOTICE.format(tag='tool_result')}\n\nQuestion: {question}"
        self.last_messages = [SystemMessage(self.answer_prompt), *history, HumanMessage(prompt)]
        answer = self.model.invoke(self.last_messages)
        text = message_text(answer)
        name = model_label(self.model)
        steps.append(AgentStep("model", name, summarize(text), time.perf_counter() - started))
        return AgentResult(text, records, steps, "answer", choice)


def _tool_params(tool: BaseTool) -> list[str]:
    schema = tool.tool_call_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return list(schema.model_fields)
    if isinstance(schema, dict):
        return list((schema.get("properties") or {}).keys())
    return []
