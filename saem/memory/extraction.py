"""The LLM step of long-term memory: the prompt, the structured answer, and parsing it.

    messages = extraction_prompt("User: I moved to Busan\nAssistant: Noted.", candidates)
    ops = ask_memory_ops(chat_model, messages).operations   # [MemoryOp(action='UPDATE', ...)]

Existing memories are numbered 0..n-1 in the prompt (not by row id), so a model cannot name a
row it was not shown; ``LongTermMemory`` maps the numbers back and guards every change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError

from saem.errors import StructuredOutputError

if TYPE_CHECKING:
    from saem.memory.longterm import Memory

__all__ = ["MemoryOp", "MemoryOps", "extraction_prompt", "ask_memory_ops"]


class MemoryOp(BaseModel):
    """One operation on the user's memories."""

    # every key required, so a grammar makes even a small model write all three, in this order
    action: Literal["ADD", "UPDATE", "DELETE", "NOOP"]
    text: str = Field(description="the fact, one short sentence (for ADD and UPDATE; may be empty otherwise)")
    target: int | None = Field(description="the number of an existing memory (UPDATE, DELETE, NOOP), else null")


class MemoryOps(BaseModel):
    """The operations to apply to the user's memories after a conversation turn."""

    operations: list[MemoryOp]


_SYSTEM = """You maintain a list of durable facts about the user: preferences, biography, plans, \
relationships, and anything the user asks you to remember. Read the conversation turn and compare \
it with the existing memories. For each new or changed fact output one operation:
- ADD: a new fact (write it as one short sentence, in the language of the conversation);
- UPDATE: an existing memory is now different or more precise (give its number and the new text);
- DELETE: the user says an existing memory is wrong or asks to forget it (give its number);
- NOOP: the fact is already remembered (give its number).
Ignore small talk, questions, and facts about the world that are not about the user.
Answer with JSON only: {"operations": [{"action": "ADD", "text": "...", "target": null}]}.
Output {"operations": []} when there is nothing to remember."""


def extraction_prompt(turn_text: str, candidates: Sequence[Memory]) -> list[BaseMessage]:
    """The messages ``extract_facts`` sends: existing memories are numbered 0..n-1 (not by row
    id, so a model cannot name a row it was not shown)."""
    listed = "\n".join(f"{i}. {m.text}" for i, m in enumerate(candidates)) or "(none)"
    return [
        SystemMessage(_SYSTEM),
        HumanMessage(f"Existing memories:\n{listed}\n\nConversation turn:\n{turn_text.strip()}"),
    ]


def ask_memory_ops(model: BaseChatModel, messages: list[BaseMessage]) -> MemoryOps:
    """``with_structured_output(MemoryOps)``; if the model answered in text instead of the tool
    call (e.g. a fake or a model without tools), the JSON in its text is parsed. Raises
    ``StructuredOutputError`` (with the raw text) when neither gives valid ``MemoryOps``."""
    try:
        out: Any = model.with_structured_output(MemoryOps, include_raw=True).invoke(messages)
    except NotImplementedError:
        out = {"raw": model.invoke(messages), "parsed": None}
    parsed = out.get("parsed") if isinstance(out, dict) else out
    if isinstance(parsed, MemoryOps):
        return parsed
    if isinstance(parsed, dict):
        return MemoryOps.model_validate(parsed)
    raw = out.get("raw") if isinstance(out, dict) else None
    raw_text = raw.text if isinstance(raw, BaseMessage) else ""
    body = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", raw_text)
    try:
        return MemoryOps.model_validate_json(body)
    except ValidationError as err:
        raise StructuredOutputError(
            f"memory extraction: the model's answer is not valid MemoryOps JSON ({err.error_count()} errors)",
            raw=raw_text,
            hint="use a model with structured output (json_schema) or a larger model",
        ) from err
