"""GBNF grammars for constrained decoding: JSON objects, JSON schemas, and tool calls.

Built on llama-cpp-python's port of llama.cpp's ``json_schema_to_grammar`` with two fixes:

* strings may not contain raw control characters (llama-cpp-python's ``char`` rule allows a
  bare newline inside a string, which strict JSON parsers reject);
* objects without ``additionalProperties`` get no extra keys (the converter's default), so a
  tool call can only carry the arguments its schema names.

    >>> g = json_schema_grammar({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    >>> g.splitlines()[0].startswith("a-kv ::=")
    True
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from saem.errors import ModelError

__all__ = ["JSON_OBJECT_GBNF", "json_schema_grammar", "tool_call_grammar", "compile_grammar", "cap_strings",
           "TOOL_CALL_OPEN", "TOOL_CALL_CLOSE"]

TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"

# Any JSON object (json_mode). Whitespace is bounded so the model cannot pad forever.
JSON_OBJECT_GBNF = r"""
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,3})? ws
ws     ::= | " " | "\n" [ \t]{0,8}
"""

_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _strip_titles(schema: Any) -> Any:
    # "title" is documentation; the converter ignores it, but it bloats cache keys.
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


@lru_cache(maxsize=128)
def _convert(schema_json: str, prop_order: tuple[str, ...]) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = json_schema_to_gbnf(schema_json, prop_order=list(prop_order))
    except Exception as err:  # the converter raises bare Exceptions / ValueErrors
        raise ModelError(
            f"cannot build a grammar for this JSON schema: {err}",
            hint="simplify the schema (plain objects, strings, numbers, enums, arrays work)",
        ) from err
    if _LOOSE_CHAR in grammar:
        grammar = grammar.replace(_LOOSE_CHAR, _STRICT_CHAR)
    return str(grammar)


_FREE_STRING_KEYS = ("maxLength", "enum", "const", "pattern", "format")


def cap_strings(schema: Any, max_chars: int | None) -> Any:
    """``schema`` with ``maxLength: max_chars`` on every free-text string that has no bound.

    A small model sometimes "forgets" to close a string and writes prose until the token budget
    runs out, leaving invalid JSON. A bound makes every string — hence the document — finish.
    """
    if max_chars is None:
        return schema
    if isinstance(schema, list):
        return [cap_strings(v, max_chars) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in ("enum", "const", "default", "examples") else cap_strings(v, max_chars))
           for k, v in schema.items()}
    if out.get("type") == "string" and not any(k in out for k in _FREE_STRING_KEYS):
        out["maxLength"] = max_chars
    return out


def json_schema_grammar(
    schema: dict[str, Any], *, prop_order: tuple[str, ...] = (), max_string_chars: int | None = None
) -> str:
    """GBNF text accepting exactly the JSON documents that match ``schema`` (root rule ``root``).

    ``max_string_chars`` bounds strings that the schema leaves unbounded (see ``cap_strings``).
    """
    return _convert(json.dumps(cap_strings(_strip_titles(schema), max_string_chars)), prop_order)


def tool_call_grammar(tools: list[dict[str, Any]], *, max_string_chars: int | None = None) -> str:
    """GBNF for one ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block.

    ``tools`` are OpenAI-format tool dicts; the call must name one of them and carry arguments
    valid for that tool's parameter schema.
    """
    alternatives = []
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        params = dict(params)
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    schema: dict[str, Any] = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    body = json_schema_grammar(schema, prop_order=("name", "arguments"), max_string_chars=max_string_chars)
    body = re.sub(r"^root ::=", "tool-call-json ::=", body, count=1, flags=re.MULTILINE)
    open_lit = json.dumps(TOOL_CALL_OPEN)
    close_lit = json.dumps(TOOL_CALL_CLOSE)
    return f"root ::= {open_lit} tool-call-json {close_lit}\n{body}"


@lru_cache(maxsize=64)
def compile_grammar(text: str) -> Any:
    """A ``llama_cpp.LlamaGrammar`` for GBNF ``text`` (cached; grammars are immutable)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(text, verbose=False)
