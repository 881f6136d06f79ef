"""Render chat templates (the GGUF's own Jinja, or a named built-in) in a sandbox.

A GGUF carries its chat template as Jinja source (``tokenizer.chat_template``). Running that
source is running untrusted code, so it is compiled in a ``jinja2.sandbox``
``ImmutableSandboxedEnvironment``; any access the sandbox refuses (``__class__``,
``__globals__``, mutating a list, ...) raises :class:`ChatTemplateSecurityError` at once — it
is both a ``ModelError`` (for saem's CLI) and a ``jinja2.exceptions.SecurityError`` — instead
of Jinja's default of quietly rendering an empty string.

    >>> t = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
    >>> t.render([{"role": "user", "content": "hi"}], add_generation_prompt=False)
    '<user>hi'

Rendering is a pure function of (template, messages, tools, flags): the same conversation
always gives the same bytes, which is what lets llama.cpp reuse the KV cache of a shared prefix.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from saem.errors import ModelError

__all__ = ["ChatTemplate", "ChatTemplateSecurityError", "BUILTIN_FORMATS", "builtin_template"]


class ChatTemplateSecurityError(ModelError, SecurityError):
    """A chat template tried something the sandbox forbids; nothing was rendered or decoded."""

    # jinja2's TemplateError exposes ``message`` as a read-only property; shadow it with a plain
    # attribute so ``SaemError.__init__`` can set it.
    message = ""


class _Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that fails loudly on unsafe access (Jinja's default renders '')."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


class _GenerationTag(Extension):
    """Accept (and ignore) HF's ``{% generation %}`` block used by some training templates."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # transformers' tojson: no HTML escaping, keeps non-ASCII
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


# Templates for GGUFs that ship none (select with chat_format=...). Kept byte-identical to the
# reference templates of those model families.
BUILTIN_FORMATS: dict[str, str] = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "mistral-instruct": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        "{{ message['content'] + eos_token }}{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% endif %}{% endfor %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
        "else 'user' %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
}


def builtin_template(name: str) -> str:
    """The Jinja source of a built-in chat format, or ModelError naming the known ones."""
    try:
        return BUILTIN_FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_FORMATS))
        raise ModelError(
            f"unknown chat_format {name!r}",
            hint=f"use one of: {known}; or a GGUF that ships a chat template",
        ) from None


class ChatTemplate:
    """A compiled, sandboxed chat template.

    Thread-safe: a compiled Jinja template is immutable and rendering keeps no state.
    Raises ``ChatTemplateSecurityError`` on sandbox violations and ``ModelError`` on syntax
    errors (at construction) or template-raised errors (at render).
    """

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except SecurityError as err:
            raise ChatTemplateSecurityError(f"chat template refused by the sandbox: {err}") from err
        except TemplateError as err:
            raise ModelError(
                f"chat template does not compile: {err}", hint="pass chat_format=... or a fixed chat_template"
            ) from err

    # What the template understands natively (else saem renders tools into plain text).
    @property
    def handles_tools(self) -> bool:
        return "tools" in self.source

    @property
    def handles_tool_calls(self) -> bool:
        return "tool_calls" in self.source

    @property
    def handles_tool_role(self) -> bool:
        return "'tool'" in self.source or '"tool"' in self.source

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        """Render ``messages`` (dicts with ``role`` and ``content``) to the prompt text."""
        try:
            return self._template.render(
                messages=messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except SecurityError as err:
            raise ChatTemplateSecurityError(f"chat template refused by the sandbox: {err}") from err
        except TemplateError as err:
            raise ModelError(
                f"chat template failed to render: {err}",
                hint="the conversation may break the template's rules (e.g. roles must alternate)",
            ) from err
