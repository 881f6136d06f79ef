"""Deterministic fakes for saem's seams, for your tests and ours.

* ``HashEmbeddings`` — a bag of hashed word and Hangul-bigram features: the same text always
  gives the same unit vector, and texts that share words are closer than texts that don't.
* ``ScriptedChatModel`` — a ``BaseChatModel`` that replays a script: plain text, tool calls, or
  deliberately malformed JSON; it records every prompt it was given.
* ``FakeReranker`` — scores a passage by how many query words it contains.

    >>> from saem.testing import ScriptedChatModel, tool_call
    >>> model = ScriptedChatModel(script=["hello", tool_call("search", {"q": "lora"}), "{broken"])
    >>> model.invoke("hi").content
    'hello'
    >>> model.invoke("again").tool_calls[0]["name"]
    'search'
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from saem.retrieval.types import Hit, RetrievalResult

__all__ = [
    "HashEmbeddings",
    "ScriptedChatModel",
    "FakeReranker",
    "FakeSearcher", "ScriptedPromptModel",
    "tool_call",
    "features",
    "run_in_threads",
]

_WORD = re.compile(r"[0-9A-Za-z]+|[\uac00-\ud7a3]+")


def run_in_threads(work: Callable[[int], Any], n: int) -> list[BaseException]:
    """Run ``work(0)`` … ``work(n - 1)`` each on its own thread, all at once; wait for them and
    return what they raised (empty when every call succeeded), for concurrency tests."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as err:  # returned to the caller, who asserts on it
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def features(text: str) -> list[str]:
    """Lower-cased Latin/digit words, and each Hangul run as character bigrams (or one syllable)."""
    out: list[str] = []
    for token in _WORD.findall(text.lower()):
        if "\uac00" <= token[0] <= "\ud7a3":
            out.extend(token[i : i + 2] for i in range(max(1, len(token) - 1)))
        else:
            out.append(token)
    return out


class HashEmbeddings(Embeddings):
    """Hashed bag-of-features embedder: deterministic, unit length, lexical similarity.

    Thread-safe (stateless). ``model_id`` is stable so stored vectors can be checked. A
    ``saem.models.protocols.TokenLimitedEmbedder`` with no limit: it counts a token per feature.
    """

    max_seq_length: int | None = None  # reads any length (a subclass may set a limit)

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise ValueError("dimension must be at least 2")
        self.dimension = dimension
        self.model_id = f"fake:hash-{dimension}"

    def _embed(self, text: str) -> list[float]:
        vec = [0.0] * self.dimension
        feats = features(text) or [text or "<empty>"]
        for feat in feats:
            digest = hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimension
            sign = 1.0 if digest[4] & 1 else -1.0
            vec[index] += sign
        norm = sum(v * v for v in vec) ** 0.5 or 1.0
        return [v / norm for v in vec]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    def tokenizer_count(self, text: str) -> int:
        """Token count as this fake sees it (one per feature), for chunkers."""
        return len(features(text))


def tool_call(name: str, args: dict[str, Any], *, call_id: str | None = None) -> AIMessage:
    """An AIMessage that calls one tool, for use in a ``ScriptedChatModel`` script."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id or f"call_{name}"}])


class ScriptedChatModel(BaseChatModel):
    """Replays ``script`` in order, one item per call; raises when the script runs out.

    Items: a ``str`` (the reply text, which may be malformed JSON on purpose) or an
    ``AIMessage`` (e.g. from ``tool_call``). Every call's messages are appended to ``prompts``.
    Streaming yields the reply in 3-character chunks. Thread-safe.
    """

    script: list[str | AIMessage] = Field(default_factory=list)
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    _position: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "saem-scripted"

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        with self._lock:
            if self._position >= len(self.script):
                raise RuntimeError(f"ScriptedChatModel: script exhausted after {len(self.script)} replies")
            item = self.script[self._position]
            self._position += 1
            self.prompts.append(list(messages))
        return AIMessage(content=item) if isinstance(item, str) else item

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self._next(messages)
        text = message.content if isinstance(message.content, str) else ""
        if stop:
            for s in stop:
                if s in text:
                    text = text[: text.index(s)]
            message = message.model_copy(update={"content": text})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._generate(messages, stop=stop).generations[0].message
        text = message.content if isinstance(message.content, str) else ""
        for i in range(0, len(text), 3):
            piece = text[i : i + 3]
            if run_manager:
                run_manager.on_llm_new_token(piece)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        if isinstance(message, AIMessage) and message.tool_calls:
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": c["name"], "args": _json(c["args"]), "id": c["id"], "index": n}
                        for n, c in enumerate(message.tool_calls)
                    ],
                )
            )

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Accept tools (the script decides what is called); records nothing else."""
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)


def _json(args: dict[str, Any]) -> str:
    import json

    return json.dumps(args, ensure_ascii=False)


class ScriptedPromptModel(ScriptedChatModel):
    """A ``ScriptedChatModel`` that keeps the whole ``saem.models.protocols.PromptModel``
    contract, like ``LlamaCppChatModel``: it renders a prompt as ``type: text`` lines, counts a
    token per word, and records every ``prefill`` in ``prefilled`` (``fail=True``: prefill
    raises, as a model that went away would)."""

    n_ctx: int = 4096
    max_tokens: int = 256
    prefilled: list[list[BaseMessage]] = Field(default_factory=list)
    fail: bool = False

    def render_prompt(self, messages: Any, *, tools: Sequence[Any] | None = None) -> str:
        return "\n".join(f"{m.type}: {m.text}" for m in self._convert_input(messages).to_messages())

    def count_tokens(self, messages: Any, *, tools: Sequence[Any] | None = None) -> int:
        return len(self.render_prompt(messages, tools=tools).split())

    def get_num_tokens(self, text: str) -> int:
        return len(text.split())

    def prefill(self, messages: Any) -> None:
        if self.fail:
            raise RuntimeError("the model went away")
        self.prefilled.append(list(self._convert_input(messages).to_messages()))


class FakeSearcher:
    """A ``saem.retrieval.types.Searcher`` over fixed passages: scores each by the share of query
    features it contains (like ``FakeReranker``), drops the zeros, abstains when none is left.
    ``filters`` match a passage's ``source`` exactly (``{"source": "a.md"}``); any other key is
    a ``ValueError``, as in the real searcher. Every query is kept in ``queries``."""

    def __init__(self, passages: Mapping[str, str]) -> None:
        self.passages = dict(passages)  # source -> text
        self.queries: list[str] = []

    def search(self, query: str, k: int = 5, *, filters: Mapping[str, Any] | None = None) -> RetrievalResult:
        self.queries.append(query)
        unknown = set(filters or {}) - {"source"}
        if unknown:
            raise ValueError(f"unknown filter key {sorted(unknown)[0]!r}; filter on one of ['source']")
        wanted = set(features(query))
        scored = [
            (len(wanted & set(features(text))) / max(len(wanted), 1), source, text)
            for source, text in self.passages.items()
            if not filters or filters.get("source") == source
        ]
        ranked = sorted((x for x in scored if x[0] > 0), key=lambda x: -x[0])[: max(k, 0)]
        hits = [
            Hit(
                chunk_id=i + 1,
                text=text,
                source=source,
                start=0,
                end=len(text),
                heading="",
                page=None,
                rank=i + 1,
                score=score,
                fused_score=score,
                fused_rank=i + 1,
                cosine=score,
            )  # fmt: skip
            for i, (score, source, text) in enumerate(ranked)
        ]
        reason = None if hits else "no passage shares a word with the query"
        return RetrievalResult(query=query, hits=hits, abstained=not hits, reason=reason)


class FakeReranker:
    """Scores each passage by the share of query features it contains; stable order on ties."""

    model_id = "fake:overlap"

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        wanted = set(features(query))
        if not wanted:
            return [0.0 for _ in passages]
        return [len(wanted & set(features(p))) / len(wanted) for p in passages]
