"""Models behind saem's seams: the chat model (llama.cpp), the embedder, the reranker.

Everything here resolves models offline (``saem.models.registry``); heavy libraries import
only when a model is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'saem.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
