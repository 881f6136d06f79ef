"""What saem uses of a chat model beyond LangChain's ``BaseChatModel``, declared.

Any LangChain chat model answers a turn. A model that also shows the exact prompt it would send
(``PromptModel``: ``LlamaCppChatModel``) lets saem count the context by its own tokenizer, trace
the rendered prompt, and prefill the next turn; one without it (``OpenAICompatibleChatModel``,
any other provider's model) gets estimates and a plain rendering. The turn asks
``isinstance(model, PromptModel)`` instead of probing attribute names one by one, so a model
either keeps this whole contract or none of it, and mypy checks both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import LanguageModelInput

__all__ = ["PromptModel", "model_label"]


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


def model_label(model: object) -> str:
    """The name a trace shows for a chat model: its ``model_name`` (saem's models set it; so do
    most integrations), else its class name."""
    name = getattr(model, "model_name", None)
    return name if isinstance(name, str) and name else type(model).__name__
