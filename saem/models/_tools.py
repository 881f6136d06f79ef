"""LangChain messages and tools → template messages, and model text → ``AIMessage.tool_calls``.

Templates that understand tools (they mention ``tools`` / ``tool_calls`` / the ``tool`` role)
get them natively, in the Hugging Face convention. For the others (SmolLM2's plain ChatML, for
one) saem writes the tools into the system message and renders calls and results as text:

    <tool_call>
    {"name": "get_weather", "arguments": {"location": "Seoul"}}
    </tool_call>

    <tool_response>
    It's sunny.
    </tool_response>

The same ``<tool_call>`` block is what the model produces (a grammar enforces it when a tool
choice is forced), so a call the model made renders back into the history unchanged.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.utils.function_calling import convert_to_openai_tool

from saem.errors import ToolError
from saem.models._chat_template import ChatTemplate
from saem.models._grammar import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

__all__ = [
    "to_openai_tools",
    "forced_tools",
    "to_template_messages",
    "tool_preamble",
    "format_tool_call",
    "parse_tool_calls",
    "new_call_id",
]

_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def to_openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """OpenAI-format tool dicts for LangChain tools, functions, pydantic models or dicts."""
    return [convert_to_openai_tool(t) for t in tools]


def forced_tools(tools: list[dict[str, Any]], tool_choice: Any) -> list[dict[str, Any]] | None:
    """The tools a call *must* pick from, or None when the model may answer in text.

    ``tool_choice``: None / "auto" / "none" (free), "any" / "required" / True (one of all tools),
    a tool name, or a dict ``{"type": "function", "function": {"name": ...}}`` / ``{"name": ...}``.
    """
    if tool_choice in (None, False, "auto", "none"):
        return None
    if tool_choice in ("any", "required", True):
        return tools
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    else:
        name = tool_choice
    if not isinstance(name, str):
        raise ToolError(f"unsupported tool_choice {tool_choice!r}", hint="use 'auto', 'any', a tool name or a dict")
    chosen = [t for t in tools if t["function"]["name"] == name]
    if not chosen:
        known = ", ".join(t["function"]["name"] for t in tools)
        raise ToolError(f"tool_choice names {name!r}, which is not bound", tool=name, hint=f"bound tools: {known}")
    return chosen


def tool_preamble(tools: list[dict[str, Any]]) -> str:
    """System-prompt text that describes the tools to a template without native tool support."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "You can call functions. Their signatures are inside <tools></tools>:\n"
        f"<tools>\n{lines}\n</tools>\n"
        "To call a function, reply with only a JSON object with its name and arguments, like this:\n"
        '<tool_call>\n{"name": "function_name", "arguments": {"argument": "value"}}\n</tool_call>'
    )


def format_tool_call(name: str, args: dict[str, Any]) -> str:
    call = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{call}{TOOL_CALL_CLOSE}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") in ("image", "image_url", "audio", "file", "video"):
            raise ValueError(f"{block['type']} content is not supported by this text-only model")
    return "".join(parts)


def to_template_messages(
    messages: Sequence[BaseMessage],
    template: ChatTemplate,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Template messages and the ``tools`` argument to render ``messages`` with.

    Deterministic: the same messages always give the same dicts, in the same key order.
    """
    native_calls = template.handles_tool_calls
    native_role = template.handles_tool_role
    out: list[dict[str, Any]] = []
    for message in messages:
        text = _text(message.content)
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(message, HumanMessage):
            out.append({"role": "user", "content": text})
        elif isinstance(message, AIMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": text}
            if message.tool_calls and native_calls:
                entry["tool_calls"] = [
                    {"id": c.get("id"), "type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                    for c in message.tool_calls
                ]
            elif message.tool_calls:
                blocks = [format_tool_call(c["name"], c["args"]) for c in message.tool_calls]
                entry["content"] = "\n".join(([text] if text else []) + blocks)
            out.append(entry)
        elif isinstance(message, ToolMessage | FunctionMessage):
            if isinstance(message, ToolMessage) and message.status == "error" and not text.lower().startswith("error"):
                text = f"Error: {text}"
            if native_role:
                entry = {"role": "tool", "content": text, "name": message.name}
                if isinstance(message, ToolMessage):
                    entry["tool_call_id"] = message.tool_call_id
                out.append(entry)
            else:
                out.append({"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"})
        elif isinstance(message, ChatMessage):
            out.append({"role": message.role, "content": text})
        else:
            raise ValueError(f"cannot render a {type(message).__name__}")
    if not tools:
        return out, None
    if template.handles_tools:
        return out, tools
    preamble = tool_preamble(tools)
    if out and out[0]["role"] == "system":
        out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{preamble}" if out[0]["content"] else preamble}
    else:
        out.insert(0, {"role": "system", "content": preamble})
    return out, None


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_calls(
    text: str, tools: list[dict[str, Any]], *, bare_json: bool = True
) -> tuple[str, list[ToolCall], list[InvalidToolCall]]:
    """Split model text into (remaining text, tool calls, invalid tool calls).

    Recognises ``<tool_call>{...}</tool_call>`` blocks (a missing closing tag is tolerated) and,
    with ``bare_json``, a reply that is nothing but ``{"name": <bound tool>, "arguments": {...}}``.
    """
    names = {t["function"]["name"] for t in tools}
    raw_calls = [m.group(1) for m in _CALL_RE.finditer(text)]
    rest = _CALL_RE.sub("", text).strip() if raw_calls else text
    if not raw_calls and bare_json and text.strip().startswith("{"):
        try:
            obj = json.loads(text.strip())
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("name") in names:
            raw_calls, rest = [text.strip()], ""
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for raw in raw_calls:
        call_id = new_call_id()
        try:
            obj = json.loads(raw)
        except ValueError as err:
            invalid.append(invalid_tool_call(name=None, args=raw, id=call_id, error=f"not JSON: {err}"))
            continue
        name = obj.get("name") if isinstance(obj, dict) else None
        args = obj.get("arguments", obj.get("parameters", {})) if isinstance(obj, dict) else None
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                args = None
        if not isinstance(name, str) or name not in names or not isinstance(args, dict):
            invalid.append(
                invalid_tool_call(name=name, args=raw, id=call_id, error="unknown tool or arguments not an object")
            )
            continue
        calls.append(tool_call(name=name, args=args, id=call_id))
    return rest, calls, invalid
