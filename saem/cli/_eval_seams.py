"""The real-model seams of the evaluation runner (``saem.evaluation.runner``), for ``saem eval``:
:class:`LlamaCppGenerator` serves one GGUF with and without the LoRA, :func:`saem_retriever` turns
``Saem.retrieve`` into the runner's numbered passages. The runner's unit tests pass fakes instead.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from saem.errors import ConfigError
from saem.evaluation.runner import Generation, Passage, Retriever

__all__ = ["LlamaCppGenerator", "saem_retriever"]


class LlamaCppGenerator:
    """One GGUF served twice by llama.cpp: plain (``"base"``) and with a GGUF LoRA (``"lora"``).

    Greedy (temperature 0), fixed ``seed``, the same settings for both; each model loads on its
    first call, outside the timed part. ``sampling`` is what the manifest records. Not thread-safe."""

    def __init__(
        self,
        model_path: str,
        lora_path: str | None = None,
        *,
        lora_model_path: str | None = None,
        seed: int = 0,
        max_tokens: int = 64,
        n_ctx: int = 4096,
        n_threads: int = 1,
    ) -> None:
        # lora_model_path: a whole model with the adapter merged in, when no GGUF LoRA could be written
        self.model_path, self.lora_path, self.lora_model_path = model_path, lora_path, lora_model_path
        self.sampling: dict[str, Any] = {
            "temperature": 0.0,
            "seed": seed,
            "max_tokens": max_tokens,
            "n_ctx": n_ctx,
            "n_threads": n_threads,
        }
        self._models: dict[str, Any] = {}

    def _model(self, which: str) -> Any:
        if which not in self._models:
            from saem.models.llamacpp import LlamaCppChatModel

            if which == "lora" and not (self.lora_path or self.lora_model_path):
                raise ConfigError("the lora arms need an adapter", hint="train one with 'saem lora train'")
            path, lora = self.model_path, None
            if which == "lora":
                path = self.lora_model_path or self.model_path
                lora = None if self.lora_model_path else self.lora_path
            self._models[which] = LlamaCppChatModel(model_path=path, lora_path=lora, **self.sampling)
            self._models[which].loaded_engine  # noqa: B018 — load now, not inside the timed call
        return self._models[which]

    def fits(self, prompt: str) -> bool:
        """Whether ``prompt``, as one user turn in the chat template, leaves room for the answer."""
        used = self._model("base").count_tokens([("user", prompt)])
        return bool(used + self.sampling["max_tokens"] <= self.sampling["n_ctx"])

    def __call__(self, model: Literal["base", "lora"], prompt: str) -> Generation:
        chat, traces = self._model(model), []  # type: ignore[var-annotated]
        started = time.perf_counter()
        message = chat.invoke([("user", prompt)], on_trace=traces.append)
        seconds = time.perf_counter() - started
        tokens = (traces[-1].prompt_tokens, traces[-1].completion_tokens) if traces else (0, 0)
        return Generation(str(message.content).strip(), seconds, *tokens)


def saem_retriever(app: Any) -> Retriever:
    """``Saem.retrieve`` as the runner's retriever (Documents → numbered Passages)."""

    def retrieve(question: str, k: int) -> list[Passage]:
        docs = app.retrieve(question, k=k)
        return [
            Passage(
                n,
                str(d.metadata.get("chunk_id", "")),
                str(d.metadata.get("source", "")),
                d.page_content,
                d.metadata.get("score"),
            )
            for n, d in enumerate(docs, 1)
        ]

    return retrieve
