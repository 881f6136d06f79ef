"""What one LLM call did: the rendered prompt, token counts, sampling parameters, timings.

Every call of :class:`saem.models.LlamaCppChatModel` produces a :class:`ChatTrace` and hands it
to the ``on_trace`` callable given to the model (or to one call). Prompts are never logged by
this module: the trace is an object in memory, and only ``ChatTrace.summary()`` (no prompt
text) goes to the ``saem.models`` logger at DEBUG level.

    >>> from saem.models.tracing import TraceRecorder
    >>> recorder = TraceRecorder()
    >>> # model = LlamaCppChatModel(on_trace=recorder); model.invoke("hi")
    >>> # print(recorder.last.prompt, recorder.last.prompt_tokens, recorder.last.time_to_first_token)
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ChatTrace", "TraceRecorder"]


@dataclass
class ChatTrace:
    """One decode. Times are seconds; token counts come from the model's own tokenizer."""

    model: str
    prompt: str
    prompt_tokens: int
    cached_tokens: int  # prompt tokens whose KV state was reused (not evaluated again)
    completion_tokens: int = 0
    completion: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # "json_schema", "tool_call", "json_object" or None
    finish_reason: str = ""
    lock_wait: float = 0.0
    prompt_eval_time: float = 0.0  # evaluating the uncached prompt tokens
    time_to_first_token: float = 0.0  # from the start of decoding (after the lock)
    generation_time: float = 0.0  # first token to last token
    total_time: float = 0.0

    @property
    def evaluated_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.evaluated_tokens / self.prompt_eval_time if self.prompt_eval_time > 0 else 0.0

    @property
    def generation_tokens_per_second(self) -> float:
        # the first token comes with the prompt evaluation; the rest are pure generation
        n = self.completion_tokens - 1
        return n / self.generation_time if n > 0 and self.generation_time > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """Everything except prompt and completion text (safe to log)."""
        data = asdict(self)
        data.pop("prompt")
        data.pop("completion")
        data["prompt_tokens_per_second"] = round(self.prompt_tokens_per_second, 1)
        data["generation_tokens_per_second"] = round(self.generation_tokens_per_second, 1)
        return data


class TraceRecorder:
    """A thread-safe ``on_trace`` callable that keeps the last ``maxlen`` traces."""

    def __init__(self, maxlen: int = 100) -> None:
        self._traces: deque[ChatTrace] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def __call__(self, trace: ChatTrace) -> None:
        with self._lock:
            self._traces.append(trace)

    @property
    def traces(self) -> list[ChatTrace]:
        with self._lock:
            return list(self._traces)

    @property
    def last(self) -> ChatTrace | None:
        with self._lock:
            return self._traces[-1] if self._traces else None

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()


def langsmith_params(model: Any, provider: str, model_name: str, stop: list[str] | None, kwargs: dict[str, Any]) -> Any:
    """The standard LangSmith params of a saem chat model (per-call overrides win over fields)."""
    from langchain_core.language_models import LangSmithParams

    params = LangSmithParams(
        ls_provider=provider,
        ls_model_name=kwargs.get("model") or model_name,
        ls_model_type="chat",
        ls_temperature=kwargs.get("temperature", model.temperature),
        ls_max_tokens=kwargs.get("max_tokens", model.max_tokens),
    )
    if stop or model.stop:
        params["ls_stop"] = stop or model.stop
    return params
