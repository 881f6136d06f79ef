"""The server backend: any OpenAI-compatible ``/v1/chat/completions`` endpoint as a chat model.

Same seam as :class:`saem.models.LlamaCppChatModel` (invoke/stream/batch, ``bind_tools``,
``with_structured_output``), for llama.cpp's ``llama-server``, ``python -m llama_cpp.server``,
vLLM, and the like. Speaks HTTP with ``httpx``; never talks to anything but ``base_url``.

    >>> from saem.models import OpenAICompatibleChatModel
    >>> llm = OpenAICompatibleChatModel(base_url="http://127.0.0.1:8080/v1", model="local")
    >>> llm.invoke("hi")                                               # doctest: +SKIP

The server renders the prompt with its own template, so ``render_prompt`` is not available
here; token counts come from the server's ``usage``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from pydantic import ConfigDict, SecretStr

from saem.errors import ModelError
from saem.models._defaults import setting_default
from saem.models._structured import parser_for, with_parser
from saem.models._tools import _text, forced_tools, to_openai_tools
from saem.models.tracing import langsmith_params

if TYPE_CHECKING:
    from saem.settings import Settings

__all__ = ["OpenAICompatibleChatModel"]

_PASSTHROUGH = ("temperature", "top_p", "max_tokens", "seed", "tools", "tool_choice", "response_format")


class OpenAICompatibleChatModel(BaseChatModel):
    """A chat model behind an OpenAI-compatible HTTP endpoint. Thread-safe (one client per call)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    base_url: str = setting_default("chat_base_url")
    model: str = "local"
    api_key: SecretStr | None = None
    temperature: float | None = setting_default("temperature")
    top_p: float | None = None
    max_tokens: int | None = setting_default("max_tokens")
    seed: int | None = setting_default("seed")
    stop: list[str] | None = None
    timeout: float | None = 120.0
    max_retries: int = 2
    streaming: bool = False
    schema_format: Literal["json_schema", "json_object"] = "json_schema"
    """How ``json_schema`` structured output is asked for: OpenAI/vLLM's ``json_schema``
    response format, or llama.cpp's ``{"type": "json_object", "schema": ...}``."""
    extra_body: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> OpenAICompatibleChatModel:
        """Build from ``settings``: sampling, ``base_url = chat_base_url`` and ``model = chat_model``
        (with ``chat_backend = "openai"``, the server's name for its model); ``overrides`` win."""
        params: dict[str, Any] = {
            "base_url": settings.chat_base_url,
            "model": settings.chat_model,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
            "seed": settings.seed,
        }
        return cls(**{**params, **overrides})

    @property
    def _llm_type(self) -> str:
        return "saem-openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return langsmith_params(self, "openai_compatible", self.model, stop, kwargs)  # type: ignore[no-any-return]

    # --- HTTP ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        key = self.api_key.get_secret_value() if self.api_key else "none"
        return {"Authorization": f"Bearer {key}"}

    def _client(self) -> httpx.Client:
        transport = httpx.HTTPTransport(retries=self.max_retries)
        return httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=self._headers(), transport=transport)

    def _aclient(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(retries=self.max_retries)
        return httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout, headers=self._headers(), transport=transport
        )

    def _payload(
        self, messages: list[BaseMessage], stop: list[str] | None, stream: bool, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": kwargs.pop("model", None) or self.model,
            "messages": [_to_openai_message(m) for m in messages],
            "stream": stream,
        }
        for key in _PASSTHROUGH:
            value = kwargs.pop(key, getattr(self, key, None))
            if value is not None:
                body[key] = value
        stops = [*(self.stop or []), *(stop or [])]
        if stops:
            body["stop"] = stops
        if "tool_choice" in body:
            body["tool_choice"] = _wire_tool_choice(body.get("tools") or [], body["tool_choice"])
        if stream:
            body["stream_options"] = {"include_usage": True}
        kwargs.pop("stream_usage", None)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments for {type(self).__name__}: {sorted(kwargs)}")
        return {**body, **(self.extra_body or {})}

    def _error(self, err: Exception) -> ModelError:
        return ModelError(
            f"chat server at {self.base_url} failed: {err}",
            model=self.model,
            hint="check that the server is running and base_url ends with /v1",
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        body = self._payload(messages, stop, False, dict(kwargs))
        try:
            with self._client() as client:
                response = client.post("/chat/completions", json=body)
                response.raise_for_status()
        except httpx.HTTPError as err:
            raise self._error(err) from err
        return self._result(response.json())

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        body = self._payload(messages, stop, False, dict(kwargs))
        try:
            async with self._aclient() as client:
                response = await client.post("/chat/completions", json=body)
                response.raise_for_status()
        except httpx.HTTPError as err:
            raise self._error(err) from err
        return self._result(response.json())

    def _result(self, data: dict[str, Any]) -> ChatResult:
        choice = data["choices"][0]
        msg = choice.get("message") or {}
        calls, invalid = [], []
        for raw in msg.get("tool_calls") or []:
            fn = raw.get("function") or {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
                calls.append(tool_call(name=fn.get("name", ""), args=args, id=raw.get("id")))
            except ValueError as err:
                invalid.append(
                    invalid_tool_call(name=fn.get("name"), args=fn.get("arguments"), id=raw.get("id"), error=str(err))
                )
        message = AIMessage(
            content=msg.get("content") or "",
            tool_calls=calls,
            invalid_tool_calls=invalid,
            usage_metadata=_usage(data.get("usage")),
            response_metadata={
                "model_name": data.get("model") or self.model,
                "finish_reason": choice.get("finish_reason"),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        body = self._payload(messages, stop, True, dict(kwargs))
        state = _StreamState(self.model)
        try:
            with self._client() as client, client.stream("POST", "/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    chunk = state.feed(line)
                    if chunk is not None:
                        if run_manager and isinstance(chunk.message.content, str) and chunk.message.content:
                            run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
                        yield chunk
        except httpx.HTTPError as err:
            raise self._error(err) from err
        yield state.last()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        body = self._payload(messages, stop, True, dict(kwargs))
        state = _StreamState(self.model)
        try:
            async with self._aclient() as client, client.stream("POST", "/chat/completions", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    chunk = state.feed(line)
                    if chunk is not None:
                        if run_manager and isinstance(chunk.message.content, str) and chunk.message.content:
                            await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
                        yield chunk
        except httpx.HTTPError as err:
            raise self._error(err) from err
        yield state.last()

    # --- tools and structured output -------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = to_openai_tools(tools)
        forced_tools(formatted, tool_choice)  # same validation as the in-process model
        if tool_choice is None:
            return self.bind(tools=formatted, **kwargs)
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
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        ls_format = {"kwargs": {"method": method}, "schema": schema}
        llm: Runnable[LanguageModelInput, Any]
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=ls_format)
            return with_parser(llm, parser_for(schema, tool_name=name), include_raw=include_raw)
        if method == "json_mode":
            response_format: dict[str, Any] = {"type": "json_object"}
        elif method == "json_schema":
            json_schema: dict[str, Any] = convert_to_json_schema(schema) if schema is not None else {}
            if self.schema_format == "json_object":
                response_format = {"type": "json_object", "schema": json_schema}
            else:
                name = json_schema.get("title", "output")
                response_format = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": json_schema, "strict": bool(strict)},
                }
        else:
            raise ValueError(f"unknown method {method!r}: use json_schema, function_calling or json_mode")
        llm = self.bind(response_format=response_format, ls_structured_output_format=ls_format)
        return with_parser(llm, parser_for(schema), include_raw=include_raw)


def _wire_tool_choice(tools: list[dict[str, Any]], choice: Any) -> Any:
    """LangChain's tool_choice values → OpenAI's. A single forced tool is named explicitly
    (llama.cpp's server only forces calls given as ``{"type": "function", ...}``)."""
    if choice in ("any", "required", True):
        if len(tools) == 1:
            return {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        return "required"
    if isinstance(choice, str) and choice not in ("auto", "none"):
        return {"type": "function", "function": {"name": choice}}
    if isinstance(choice, dict) and "function" not in choice and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _to_openai_message(message: BaseMessage) -> dict[str, Any]:
    text = _text(message.content)
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": text}
    if isinstance(message, HumanMessage):
        return {"role": "user", "content": text}
    if isinstance(message, AIMessage):
        out: dict[str, Any] = {"role": "assistant", "content": text}
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.get("id"),
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)},
                }
                for c in message.tool_calls
            ]
        return out
    if isinstance(message, ToolMessage):
        return {"role": "tool", "content": text, "tool_call_id": message.tool_call_id}
    if isinstance(message, ChatMessage):
        return {"role": message.role, "content": text}
    raise ValueError(f"cannot send a {type(message).__name__}")


def _usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    if not usage:
        return None
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


class _StreamState:
    """Turns SSE lines into chunks; usage, model name and tool calls go on the last chunk."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: dict[str, int] | None = None
        self.finish: str | None = None
        self.calls: dict[int, dict[str, Any]] = {}

    def feed(self, line: str) -> ChatGenerationChunk | None:
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            return None
        event = json.loads(data)
        self.model = event.get("model") or self.model
        if event.get("usage"):
            self.usage = _usage(event["usage"])
        for choice in event.get("choices") or []:
            self.finish = choice.get("finish_reason") or self.finish
            delta = choice.get("delta") or {}
            for raw in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(int(raw.get("index", 0)), {"name": None, "args": "", "id": None})
                fn = raw.get("function") or {}
                slot["name"] = slot["name"] or fn.get("name")
                slot["id"] = slot["id"] or raw.get("id")
                slot["args"] += fn.get("arguments") or ""
            if delta.get("content"):
                return ChatGenerationChunk(message=AIMessageChunk(content=delta["content"]))
        return None

    def last(self) -> ChatGenerationChunk:
        chunks = [
            tool_call_chunk(name=c["name"], args=c["args"], id=c["id"], index=i) for i, c in sorted(self.calls.items())
        ]
        message = AIMessageChunk(
            content="",
            tool_call_chunks=chunks,
            usage_metadata=self.usage,  # type: ignore[arg-type]
            response_metadata={"model_name": self.model, "finish_reason": self.finish},
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message)
