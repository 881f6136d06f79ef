"""Build the configured chat model: llama.cpp in process, or an OpenAI-compatible server."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from saem.settings import Settings

__all__ = ["load_chat_model"]


def load_chat_model(settings: Settings) -> BaseChatModel:
    """The chat model ``settings`` select (not loaded yet: llama.cpp loads on first use).

    ``chat_backend = "llamacpp"`` (default): ``LlamaCppChatModel`` on ``chat_model`` (a packaged
    name or a .gguf path). ``chat_backend = "openai"``: ``OpenAICompatibleChatModel`` talking to
    ``chat_base_url``, asking for model ``chat_model``.
    """
    if settings.chat_backend == "openai":
        from saem.models.openai_compat import OpenAICompatibleChatModel

        return OpenAICompatibleChatModel.from_settings(settings)
    from saem.models.llamacpp import LlamaCppChatModel

    return LlamaCppChatModel.from_settings(settings)
