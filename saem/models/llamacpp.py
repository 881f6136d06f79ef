"""The local chat model: a GGUF served in process by llama.cpp, as a LangChain ``BaseChatModel``.

    >>> from saem.models import LlamaCppChatModel
    >>> llm = LlamaCppChatModel(temperature=0)          # the packaged SmolLM2 GGUF
    >>> llm.invoke("What is the capital of France?").content        # doctest: +SKIP
    'The capital of France is Paris.'
    >>> print(llm.render_prompt([("user", "hi")]))                   # doctest: +SKIP

Contract:

* Construction is cheap: it resolves the model path (``ModelError`` if missing or not a GGUF)
  but loads nothing. The weights load once, on first use, inside a shared :class:`LlamaEngine`.
* Thread-safe: one lock serialises every use of the ``llama_cpp.Llama`` object, so ``batch``,
  ``abatch`` and threads work (calls run one after another).
* Prompts are the GGUF's own chat template rendered in a Jinja sandbox (or a named
  ``chat_format``); a GGUF with neither is a ``ModelError``. Rendering is deterministic, so
  consecutive calls that share a prefix reuse its KV cache.
* Tool calling (``bind_tools`` with ``tool_choice`` "auto", "any"/"required", a name or a dict)
  and structured output (``json_schema``, ``function_calling``, ``json_mode``) decode forced
  choices under a grammar; invalid structured output raises ``StructuredOutputError``.
* Every call produces a :class:`~saem.models.tracing.ChatTrace` (prompt, token counts,
  sampling, timings), handed to ``on_trace``; prompts are not logged unless ``log_prompts``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from saem.models._defaults import setting_default
from saem.models._engine import LlamaEngine, Sampling
from saem.models._grammar import JSON_OBJECT_GBNF, json_schema_grammar, tool_call_grammar
from saem.models._structured import parser_for, with_parser
from saem.models._tools import forced_tools, parse_tool_calls, to_openai_tools, to_template_messages
from saem.models.registry import fetch_hub_gguf, resolve
from saem.models.tracing import ChatTrace, langsmith_params

if TYPE_CHECKING:
    from saem.settings import Settings

__all__ = ["LlamaCppChatModel", "LlamaEngine", "ChatTrace"]

logger = logging.getLogger("saem.models")

_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed")
_IGNORED_KWARGS = ("model", "stream_usage", "parallel_tool_calls", "strict")
_TOOL_TAG = "<tool_call>"
_SAMPLING = Sampling()  # the defaults (from Settings; min_p is llama.cpp's)


class LlamaCppChatModel(BaseChatModel):
    """A GGUF chat model run in process by llama-cpp-python. See the module docstring."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model_path: str | None = None
    """A ``.gguf`` path or ``packaged:<name>``; None = the packaged SmolLM2."""
    chat_format: str | None = setting_default("chat_format")
    """Built-in template (chatml, llama-3, mistral-instruct, gemma) for a GGUF without one."""
    chat_template: str | None = None
    """Jinja source that replaces the GGUF's template (rendered in the same sandbox)."""
    n_ctx: int = setting_default("n_ctx")
    n_threads: int = setting_default("n_threads")
    n_batch: int = setting_default("n_batch")
    temperature: float = _SAMPLING.temperature
    top_p: float = _SAMPLING.top_p
    top_k: int = _SAMPLING.top_k
    min_p: float = _SAMPLING.min_p
    repeat_penalty: float = _SAMPLING.repeat_penalty
    max_tokens: int = _SAMPLING.max_tokens
    seed: int = _SAMPLING.seed
    stop: list[str] | None = None
    max_string_chars: int | None = 256
    """Under a grammar (tool calls, ``json_schema``), strings without a ``maxLength`` get this one,
    so a model that never closes a string still ends with valid JSON. None: unbounded."""
    kv_cache: Literal["ram"] | None = None
    """``"ram"``: keep KV states of earlier prompts (``LlamaRAMCache``) for alternating sessions.
    (Not LangChain's ``cache`` field, which caches whole responses.)"""
    kv_cache_bytes: int = 1 << 30
    timeout: float | None = None
    """Seconds to wait for the model when another call holds it (None: wait)."""
    max_retries: int = 0
    """Accepted for drop-in compatibility; a local call is never retried."""
    streaming: bool = False
    """Accepted for compatibility: ``stream()`` always streams, ``invoke()`` never does."""
    log_prompts: bool = setting_default("log_prompts")
    """Log rendered prompts at INFO level (off: prompts stay private)."""
    on_trace: Callable[[ChatTrace], None] | None = Field(default=None, exclude=True)
    """Called with the trace of every call (a per-call ``on_trace=`` kwarg works too)."""
    lora_path: str | None = None
    """A GGUF LoRA adapter (``saem.evaluation.gguf_lora``), applied when the model loads."""
    allow_downloads: bool = setting_default("allow_downloads")
    """Accept a hub id ``owner/repo:file.gguf`` as ``model_path`` and download it (needs internet)."""
    engine: LlamaEngine | None = Field(default=None, exclude=True)
    """Share one loaded model between several chat-model objects (built from the fields if None)."""

    _engine: LlamaEngine = PrivateAttr()
    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _setup(self) -> LlamaCppChatModel:
        if self.engine is not None:
            self._engine = self.engine
            self._path = self.engine.model_path
            return self
        # ModelError if missing / not GGUF / a hub id without allow_downloads
        setting = self.model_path or setting_default("chat_model")
        resolved = resolve(setting, "chat", allow_downloads=self.allow_downloads)
        path = fetch_hub_gguf(resolved) if resolved.source == "hub" else resolved.path
        self._path = path
        self._engine = LlamaEngine(
            path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_batch=self.n_batch,
            seed=self.seed,
            chat_format=self.chat_format,
            chat_template=self.chat_template,
            cache=self.kv_cache,
            cache_bytes=self.kv_cache_bytes,
            lora_path=self.lora_path,
        )
        return self

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LlamaCppChatModel:
        """Build from ``settings`` (the chat model and every sampling and llama.cpp setting);
        keyword ``overrides`` win."""
        params: dict[str, Any] = {
            "model_path": settings.chat_model,
            "chat_format": settings.chat_format,
            "n_ctx": settings.n_ctx,
            "n_threads": settings.n_threads,
            "n_batch": settings.n_batch,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": settings.top_k,
            "repeat_penalty": settings.repeat_penalty,
            "max_tokens": settings.max_tokens,
            "seed": settings.seed,
            "log_prompts": settings.log_prompts,
            "allow_downloads": settings.allow_downloads,
            # "ram" keeps KV states of alternating sessions; the setting's "none" is the field's None
            "kv_cache": "ram" if settings.kv_cache == "ram" else None,
        }
        return cls(**{**params, **overrides})

    # --- identity --------------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "saem-llamacpp"

    @property
    def model_name(self) -> str:
        """The GGUF's file name without ``.gguf`` (what traces and usage report)."""
        return self._path.stem if self._path is not None else "llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_path": str(self._path),
            "lora_path": self.lora_path,
            "n_ctx": self.n_ctx,
            **{k: getattr(self, k) for k in _SAMPLING_KEYS},
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return langsmith_params(self, "llamacpp", self.model_name, stop, kwargs)  # type: ignore[no-any-return]

    @property
    def loaded_engine(self) -> LlamaEngine:
        """The engine, loaded (loads the GGUF on first access)."""
        return self._engine.load()

    # --- prompt visibility -----------------------------------------------------------------

    def render_prompt(self, messages: LanguageModelInput, *, tools: Sequence[Any] | None = None) -> str:
        """The exact prompt text the model would see for ``messages`` (and bound ``tools``)."""
        lc_messages = self._convert_input(messages).to_messages()
        formatted = to_openai_tools(tools) if tools else None
        template = self._engine.template
        template_messages, native_tools = to_template_messages(lc_messages, template, formatted)
        return template.render(template_messages, tools=native_tools, add_generation_prompt=True)

    def prefill(self, messages: LanguageModelInput) -> threading.Thread | None:
        """Start evaluating ``messages`` — the leading messages of a later call, such as the next
        chat turn's system prompt and history — into the KV cache while the model is idle.

        Returns the background thread (None when the model is not loaded yet). Never delays a
        call: the prefill yields the model to any call that asks for it (see ``LlamaEngine.prefill``).
        """
        if not self._engine.loaded:
            return None
        lc_messages = self._convert_input(messages).to_messages()
        template = self._engine.template
        template_messages, _ = to_template_messages(lc_messages, template, None)
        return self._engine.prefill(template.render(template_messages, add_generation_prompt=False))

    def count_tokens(self, messages: LanguageModelInput, *, tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens for ``messages``, by the model's own tokenizer (what the context holds)."""
        return len(self._engine.tokenize(self.render_prompt(messages, tools=tools)))

    def get_num_tokens(self, text: str) -> int:
        return len(self._engine.tokenize(text))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        return self.count_tokens(messages, tools=tools)

    # --- decoding --------------------------------------------------------------------------

    def _plan(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Plan:
        kwargs = dict(kwargs)
        tools: list[dict[str, Any]] | None = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        response_format: dict[str, Any] | None = kwargs.pop("response_format", None)
        on_trace = kwargs.pop("on_trace", None) or self.on_trace
        overrides = {k: kwargs.pop(k) for k in _SAMPLING_KEYS if k in kwargs}
        for key in _IGNORED_KWARGS:
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments for {type(self).__name__}: {sorted(kwargs)}")
        if tool_choice == "none":
            tools = None
        forced = forced_tools(tools, tool_choice) if tools else None
        template = self._engine.template
        template_messages, native_tools = to_template_messages(messages, template, tools)
        prompt = template.render(template_messages, tools=native_tools, add_generation_prompt=True)
        grammar, kind = None, None
        if forced:
            grammar, kind = tool_call_grammar(forced, max_string_chars=self.max_string_chars), "tool_call"
        elif response_format and response_format.get("type") == "json_schema":
            schema = response_format["schema"]
            grammar, kind = json_schema_grammar(schema, max_string_chars=self.max_string_chars), "json_schema"
        elif response_format and response_format.get("type") == "json_object":
            grammar, kind = JSON_OBJECT_GBNF, "json_object"
        sampling = Sampling(**{k: getattr(self, k) for k in _SAMPLING_KEYS} | overrides)
        stops = list(dict.fromkeys([*(self.stop or []), *(stop or [])]))
        trace = ChatTrace(model=self.model_name, prompt=prompt, prompt_tokens=0, cached_tokens=0, grammar=kind)
        return _Plan(prompt, sampling, stops, grammar, tools, forced is not None, trace, on_trace)

    def _decode(self, plan: _Plan) -> Iterator[str]:
        yield from self._engine.stream(
            plan.prompt, plan.sampling, plan.trace, stop=plan.stop, grammar=plan.grammar, timeout=self.timeout
        )
        logger.debug("llm call %s", plan.trace.summary())
        if self.log_prompts:
            logger.info("prompt:\n%s", plan.prompt)
        if plan.on_trace is not None:
            plan.on_trace(plan.trace)

    def _metadata(self, plan: _Plan) -> tuple[dict[str, Any], dict[str, Any]]:
        t = plan.trace
        usage = {
            "input_tokens": t.prompt_tokens,
            "output_tokens": t.completion_tokens,
            "total_tokens": t.prompt_tokens + t.completion_tokens,
            "input_token_details": {"cache_read": t.cached_tokens},
        }
        response = {
            "model_name": self.model_name,
            "finish_reason": t.finish_reason,
            "timings": {
                "prompt_eval_time": t.prompt_eval_time,
                "time_to_first_token": t.time_to_first_token,
                "generation_time": t.generation_time,
                "total_time": t.total_time,
            },
        }
        return usage, response

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan = self._plan(messages, stop, kwargs)
        text = "".join(self._decode(plan))
        usage, response = self._metadata(plan)
        calls: list[Any] = []
        invalid: list[Any] = []
        if plan.tools:
            text, calls, invalid = parse_tool_calls(text, plan.tools, bare_json=not plan.forced)
        message = AIMessage(
            content=text,
            tool_calls=calls,
            invalid_tool_calls=invalid,
            usage_metadata=usage,
            response_metadata=response,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan = self._plan(messages, stop, kwargs)
        gate = _ToolGate(hold_all=plan.forced) if plan.tools else None
        full = ""
        for piece in self._decode(plan):
            full += piece
            out = gate.feed(piece) if gate is not None else piece
            if out:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=out))
                if run_manager:
                    run_manager.on_llm_new_token(out, chunk=chunk)
                yield chunk
        usage, response = self._metadata(plan)
        tail, chunks = "", []
        if plan.tools and gate is not None:
            rest, calls, invalid = parse_tool_calls(full, plan.tools, bare_json=not plan.forced)
            tail = rest[len(gate.emitted) :] if rest.startswith(gate.emitted) else ""
            chunks = [
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"], ensure_ascii=False), id=c["id"], index=i)
                for i, c in enumerate(calls)
            ]
            chunks += [
                tool_call_chunk(name=c.get("name"), args=c.get("args"), id=c.get("id"), index=len(calls) + i)
                for i, c in enumerate(invalid)
            ]
        last = AIMessageChunk(
            content=tail,
            tool_call_chunks=chunks,
            usage_metadata=usage,  # type: ignore[arg-type]
            response_metadata=response,
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)

    # --- tools and structured output -------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; ``tool_choice`` "any"/"required"/a name/a dict forces a grammar-checked call."""
        formatted = to_openai_tools(tools)
        forced_tools(formatted, tool_choice)  # validate the choice now, not at the first call
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: Any,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output under a grammar; ``StructuredOutputError`` (with ``.raw``) if invalid.

        ``json_schema`` (default): decode under the schema's grammar. ``function_calling``: a
        forced call of a tool whose arguments are the schema. ``json_mode``: any JSON object
        (put the keys you want in the prompt). ``strict`` is accepted; grammars are always strict.
        """
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        if schema is None and method != "json_mode":
            raise ValueError("schema is required unless method='json_mode'")
        ls_format = {"kwargs": {"method": method}, "schema": schema}
        llm: Runnable[LanguageModelInput, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema)
            name = tool["function"]["name"]
            llm = self.bind_tools([tool], tool_choice=name, ls_structured_output_format=ls_format)
            return with_parser(llm, parser_for(schema, tool_name=name), include_raw=include_raw)
        if method == "json_schema":
            response_format = {"type": "json_schema", "schema": _grammar_schema(convert_to_json_schema(schema))}
            llm = self.bind(response_format=response_format, ls_structured_output_format=ls_format)
        elif method == "json_mode":
            llm = self.bind(response_format={"type": "json_object"}, ls_structured_output_format=ls_format)
        else:
            raise ValueError(f"unknown method {method!r}: use json_schema, function_calling or json_mode")
        return with_parser(llm, parser_for(schema), include_raw=include_raw)


def _grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema the grammar enforces: as given, minus keys that only describe it."""
    return {k: v for k, v in schema.items() if k not in ("title", "description")}


class _Plan:
    """Everything one call needs, decided before the lock is taken."""

    __slots__ = ("prompt", "sampling", "stop", "grammar", "tools", "forced", "trace", "on_trace")

    def __init__(
        self,
        prompt: str,
        sampling: Sampling,
        stop: list[str],
        grammar: str | None,
        tools: list[dict[str, Any]] | None,
        forced: bool,
        trace: ChatTrace,
        on_trace: Callable[[ChatTrace], None] | None,
    ) -> None:
        self.prompt, self.sampling, self.stop, self.grammar = prompt, sampling, stop, grammar
        self.tools, self.forced, self.trace, self.on_trace = tools, forced, trace, on_trace


class _ToolGate:
    """Streams text until a tool call may be starting, then holds the rest for parsing."""

    def __init__(self, *, hold_all: bool) -> None:
        self.holding = hold_all
        self.text = ""
        self.emitted = ""

    def feed(self, piece: str) -> str:
        self.text += piece
        if self.holding:
            return ""
        if not self.emitted and self.text.lstrip().startswith("{"):
            self.holding = True  # maybe a bare JSON call
            return ""
        at = self.text.find(_TOOL_TAG)
        if at != -1:
            self.holding = True
            end = at
        else:
            end = len(self.text) - _partial_suffix(self.text, _TOOL_TAG)
        out = self.text[len(self.emitted) : end]
        self.emitted += out
        return out


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
