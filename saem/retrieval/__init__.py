"""Retrieval: dense (FAISS) + lexical (SQLite FTS5, Korean-aware) search, fusion and reranking.

    from saem.retrieval import FaissVectorStore
    store = FaissVectorStore(embedding=my_embeddings, path="./vectors")   # path=None: in memory
    store.add_texts(["토큰은 텍스트의 조각이다"], metadatas=[{"source": "notes.md"}])
    store.similarity_search("token", k=1, filter={"source": {"$glob": "*.md"}})
"""

from __future__ import annotations

from typing import Any

from saem._lazy import lazy_attribute

_LAZY = {"FaissVectorStore": "saem.retrieval.vectorstore"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
