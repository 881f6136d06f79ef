"""Models behind saem's seams: the chat model (llama.cpp), the embedder, the reranker.

Everything here resolves models offline (``saem.models.registry``); heavy libraries import
only when a model is loaded.
"""

from __future__ import annotations

from typing import Any

from saem._lazy import lazy_attribute

_LAZY = {
    "LlamaCppChatModel": "saem.models.llamacpp",
    "OpenAICompatibleChatModel": "saem.models.openai_compat",
    "SentenceTransformerEmbeddings": "saem.models.embedders",
    "load_embedder": "saem.models.embedders",
    "embedder_id": "saem.models.embedders",
    "resolve": "saem.models.registry",
    "check_models": "saem.models.check",
    "load_chat_model": "saem.models.factory",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
