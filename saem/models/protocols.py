"""What saem uses of a chat model beyond LangChain's ``BaseChatModel``, and of an embedder beyond
``Embeddings``, declared.

Any LangChain chat model answers a turn. A model that also shows the exact prompt it would send
(``PromptModel``: ``LlamaCppChatModel``) lets saem count the context by its own tokenizer, trace
the rendered prompt, and prefill the next turn; one without it (``OpenAICompatibleChatModel``,
any other provider's model) gets estimates and a plain rendering. The turn asks
``isinstance(model, PromptModel)`` instead of probing attribute names one by one, so a model
either keeps this whole contract or none of it, and mypy checks both sides.

Any LangChain embedder embeds. One that also says how many tokens it reads and counts them with
its own tokenizer (``TokenLimitedEmbedder``: ``SentenceTransformerEmbeddings``, and the fake
``HashEmbeddings``) gets queries cut to what it reads (``saem.retrieval``) and chunks sized by
its tokens (``saem.ingest``); any other gets estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

# typing_extensions' runtime protocols look members up statically (as typing does from Python
# 3.12): on 3.11, typing's isinstance would read ``max_seq_length``, loading the embedder's model
# (and raising if it cannot load) just to answer whether it has one
import typing_extensions
from langchain_core.language_models import LanguageModelInput

__all__ = ["PromptModel", "TokenLimitedEmbedder", "model_label"]


@runtime_checkable
class PromptModel(Protocol):
    """A chat model whose prompt saem can see, count and warm (five members)."""

    n_ctx: int
    """The context window in tokens (the loaded model's, which wins over the settings)."""
    max_tokens: int
    """Tokens reserved for the answer."""

    def render_prompt(self, messages: LanguageModelInput, *, tools: Sequence[Any] | None = None) -> str:
        """The exact prompt text for ``messages`` (and bound ``tools``)."""
        ...

    def count_tokens(self, messages: LanguageModelInput, *, tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens for ``messages``, by the model's own tokenizer."""
        ...

    def prefill(self, messages: LanguageModelInput) -> Any:
        """Start evaluating ``messages`` (a later call's leading messages) into the model's cache
        while it is idle; never delays a call."""
        ...


@typing_extensions.runtime_checkable
class TokenLimitedEmbedder(typing_extensions.Protocol):
    """An embedder that says how many tokens it reads and counts them its own way (two members).

    ``isinstance(embedder, TokenLimitedEmbedder)`` loads no model; reading ``max_seq_length`` may.
    """

    @property
    def max_seq_length(self) -> int | None:
        """Tokens the model reads per text (the rest is cut off); None when it has no limit."""
        ...

    def tokenizer_count(self, text: str) -> int:
        """Tokens the model's own tokenizer makes of ``text``. Thread-safe: ingest counts in a
        helper thread while the embedder encodes."""
        ...


def model_label(model: object) -> str:
    """The name a trace shows for a chat model: its ``model_name`` (saem's models set it; so do
    most integrations), else its class name."""
    name = getattr(model, "model_name", None)
    return name if isinstance(name, str) and name else type(model).__name__
