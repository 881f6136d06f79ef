"""Rerankers: score (query, passage) pairs; higher is more relevant.

The seam is one method, ``rerank(query, passages) -> list[float]`` (one score per passage, in
the passages' order), plus a ``model_id`` for traces. Three offline implementations:

* :class:`CrossEncoderReranker` — a sentence-transformers ``CrossEncoder`` from a local folder
  (or a hub id when downloads are allowed); the strongest kind when you have one.
* :class:`EmbedderReranker` — cosine between query and passage under any LangChain
  ``Embeddings`` (e.g. a slower, better embedder than the one the index was built with).
* :class:`LlmReranker` — pointwise LLM judgement: the normalised log-probability that the local
  GGUF answers "yes" to "does this passage answer the question?".

    from saem.retrieval.rerank import CrossEncoderReranker
    reranker = CrossEncoderReranker("/models/bge-reranker-v2-m3")   # cheap: loads on first use
    scores = reranker.rerank("what is top-p?", ["Top-p keeps ...", "LoRA trains ..."])

Scores are comparable within one call only (cross-encoder logits, cosines, log-probs have
different scales). Every implementation is thread-safe (model access is serialised) and loads
its model lazily, once; a model that cannot load raises ``ModelError``. Passages longer than
``max_chars`` are cut before scoring (the caller keeps the full text).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from saem.errors import ModelError
from saem.models.embedders import embedder_id
from saem.models.protocols import model_label

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from saem.models._engine import LlamaEngine
    from saem.settings import Settings

__all__ = ["Reranker", "CrossEncoderReranker", "EmbedderReranker", "LlmReranker", "load_reranker"]


@runtime_checkable
class Reranker(Protocol):
    """Scores passages for a query: one float per passage, same order, higher = more relevant."""

    model_id: str

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]: ...


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars]


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` by folder path (or hub id with ``allow_downloads``).

    Pairs are scored in batches of ``batch_size``; the raw model output (a logit for one-label
    models) is the score. Raises ``ModelError`` on first use when the model cannot load.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int = 16,
        max_chars: int = 1000,
        allow_downloads: bool = False,
    ) -> None:
        from saem.models.registry import resolve

        self.resolved = resolve(str(model), "rerank", allow_downloads=allow_downloads)
        if self.resolved.source == "none":
            raise ModelError("no cross-encoder given", model=str(model), hint="give a CrossEncoder folder")
        self.model_id = self.resolved.model_id
        self.batch_size = batch_size
        self.max_chars = max_chars
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """Load the CrossEncoder (idempotent, thread-safe)."""
        with self._lock:
            if self._model is None:
                from saem.models.rerankers import load_cross_encoder

                self._model = load_cross_encoder(self.resolved)
            return self._model

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        model = self.load()
        pairs = [(query, _cut(p, self.max_chars)) for p in passages]
        with self._lock:
            scores = model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True)
        arr = np.asarray(scores, dtype=np.float64)
        if arr.ndim == 2:  # a multi-label head: take the last column (the "relevant" label)
            arr = arr[:, -1]
        return [float(x) for x in arr]


class EmbedderReranker:
    """Cosine between the query and each passage under ``embedder`` (any LangChain ``Embeddings``).

    Useful with a stronger embedder than the index's, over a few candidates. Passages are
    embedded in one ``embed_documents`` call (the embedder batches).
    """

    def __init__(self, embedder: Embeddings, *, max_chars: int = 1000, model_id: str | None = None) -> None:
        self.embedder = embedder
        self.max_chars = max_chars
        self.model_id = model_id or f"embedder:{embedder_id(embedder)}"

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        q = np.asarray(self.embedder.embed_query(query), dtype=np.float64)
        docs = np.asarray(self.embedder.embed_documents([_cut(p, self.max_chars) for p in passages]), dtype=np.float64)
        q_norm = np.linalg.norm(q) or 1.0
        d_norm = np.linalg.norm(docs, axis=1)
        d_norm[d_norm == 0] = 1.0
        return [float(x) for x in (docs @ q) / (d_norm * q_norm)]


_LLM_PROMPT = (
    "Question: {question}\n\nPassage: {passage}\n\nDoes the passage answer the question? Reply with yes or no."
)


class LlmReranker:
    """Pointwise relevance from the local GGUF: ``log P(yes) - log(P(yes) + P(no))`` for each passage.

    The prompt (``_LLM_PROMPT``, rendered with the model's own chat template) puts the question
    before the passage, so consecutive passages share the question's prefix in the KV cache.
    Each passage costs one prompt evaluation (no sampling). Uses the chat model's
    ``LlamaEngine`` (``next_token_logits``, one hold of the model's lock for all passages, so it
    never interleaves with a chat call; no llama-cpp-python internals here). ``max_chars`` keeps
    prompts short (the tiny default model reads ~1k tokens well).
    """

    def __init__(
        self, chat_model: BaseChatModel | None = None, *, engine: LlamaEngine | None = None, max_chars: int = 600
    ) -> None:
        if engine is None and chat_model is None:
            raise ModelError("LlmReranker needs a LlamaCppChatModel or a LlamaEngine")
        self._chat_model = chat_model
        self._engine = engine
        self.max_chars = max_chars
        if chat_model is not None:
            name = model_label(chat_model)
        else:
            name = engine.model_path.stem if engine is not None and engine.model_path is not None else "gguf"
        self.model_id = f"llm:{name}"
        self._yes: list[int] | None = None
        self._no: list[int] | None = None

    def _get_engine(self) -> LlamaEngine:
        if self._engine is None:
            from saem.models.llamacpp import LlamaCppChatModel

            if not isinstance(self._chat_model, LlamaCppChatModel):
                raise ModelError(
                    f"{type(self._chat_model).__name__} has no local llama.cpp engine",
                    hint="the LLM reranker needs chat_backend = 'llamacpp'",
                )
            self._engine = self._chat_model.loaded_engine
        return self._engine.load()

    def render(self, engine: LlamaEngine, query: str, passage: str) -> str:
        """The exact prompt one (question, passage) pair is scored with."""
        content = _LLM_PROMPT.format(question=query.strip(), passage=_cut(passage, self.max_chars).strip())
        return engine.template.render([{"role": "user", "content": content}], add_generation_prompt=True)

    def _answer_tokens(self, llama: Any) -> tuple[list[int], list[int]]:
        if self._yes is None or self._no is None:

            def first_tokens(words: Sequence[str]) -> list[int]:
                ids = {llama.tokenize(w.encode(), add_bos=False, special=False)[0] for w in words}
                return sorted(ids)

            self._yes = first_tokens(["yes", "Yes", " yes", " Yes", "YES"])
            self._no = [t for t in first_tokens(["no", "No", " no", " No", "NO"]) if t not in self._yes]
        return self._yes, self._no

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        engine = self._get_engine()
        prompts = [self.render(engine, query, p) for p in passages]
        with engine.hold() as llama:
            yes, no = self._answer_tokens(llama)
        return [_yes_share(logits, yes, no) for logits in engine.next_token_logits(prompts)]


def _yes_share(logits: np.ndarray, yes: list[int], no: list[int]) -> float:
    """log P(yes) − log(P(yes) + P(no)) over the answer's first token."""
    top = float(logits.max())
    log_z = top + math.log(float(np.exp(logits - top).sum()))
    lp_yes = _logsumexp(logits[yes]) - log_z
    lp_no = _logsumexp(logits[no]) - log_z if no else -math.inf
    return float(lp_yes - np.logaddexp(lp_yes, lp_no))


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def load_reranker(kind: str, settings: Settings, *, embedder: Embeddings | None = None) -> Reranker | None:
    """The reranker ``kind`` names: ``none``, ``embedder``, ``llm``, or a CrossEncoder folder / hub id.

    ``embedder`` is used for ``kind="embedder"`` (default: the configured embedder). Cheap: the
    model loads on first ``rerank``. Raises ``ModelError`` when a named model cannot be found.
    """
    value = kind.strip()
    if value.lower() in {"", "none", "off"}:
        return None
    max_chars = settings.rerank_max_chars
    if value == "embedder":
        if embedder is None:
            from saem.models.embedders import load_embedder

            embedder = load_embedder(settings)
        return EmbedderReranker(embedder, max_chars=max_chars)
    if value == "llm":
        from saem.models.llamacpp import LlamaCppChatModel

        return LlmReranker(LlamaCppChatModel.from_settings(settings), max_chars=min(max_chars, 600))
    return CrossEncoderReranker(
        value,
        batch_size=settings.rerank_batch_size,
        max_chars=max_chars,
        allow_downloads=settings.allow_downloads,
    )
