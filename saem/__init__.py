"""saem (샘): local-first RAG and context engineering.

    from saem import Saem
    app = Saem(data_dir="./.saem")
    app.ingest("data/")
    print(app.ask("top-p는 무엇을 조절하나요?").text)

``import saem`` is cheap: torch, faiss, llama.cpp and sentence-transformers load only when a
component that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saem.errors import (
    ConfigError,
    FileRejected,
    IndexCorrupt,
    IngestError,
    ModelError,
    NotBuiltYet,
    ParseError,
    SaemError,
    StorageBusy,
    StructuredOutputError,
    ToolError,
)

if TYPE_CHECKING:
    from saem.app.saem import Saem
    from saem.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "Saem",
    "Settings",
    "SaemError",
    "ConfigError",
    "ModelError",
    "IngestError",
    "FileRejected",
    "ParseError",
    "IndexCorrupt",
    "StorageBusy",
    "ToolError",
    "StructuredOutputError",
    "NotBuiltYet",
    "__version__",
]

_LAZY = {"Saem": "saem.app.saem", "Settings": "saem.settings"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'saem' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
