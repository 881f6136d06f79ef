"""saem (샘): local-first RAG and context engineering.

    from saem import Saem
    app = Saem(data_dir="./.saem")
    app.ingest("data/")
    print(app.ask("top-p는 무엇을 조절하나요?").text)

The public face is this module's ``__all__``: the facade ``Saem``, ``Settings``, the result types
a call returns (``Answer`` with its ``Source``/``Citation``/``BudgetReport``, ``RetrievalResult``
of ``Hit``, ``IngestReport``, ``Stats``, ``SessionInfo``, ``Memory``, ``TurnTrace``,
``AgentResult``) and the errors. Everything else is internal and may change.

``import saem`` is cheap: torch, faiss, llama.cpp and sentence-transformers load only when a
component that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saem._lazy import lazy_attribute
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
    from saem.agents.types import AgentResult
    from saem.app.saem import Saem
    from saem.app.traces import TurnTrace
    from saem.app.types import Answer, BudgetReport, Citation, Source
    from saem.ingest.report import FileResult, IngestProgress, IngestReport, Stats
    from saem.memory.history import SessionForbidden, SessionInfo
    from saem.memory.longterm import Memory
    from saem.retrieval.types import Hit, RetrievalResult
    from saem.settings import Settings

__version__ = "0.1.0"

# results a user gets back, imported on first use: name -> module
_LAZY = {
    "Saem": "saem.app.saem",
    "Settings": "saem.settings",
    "Answer": "saem.app.types",
    "Source": "saem.app.types",
    "Citation": "saem.app.types",
    "BudgetReport": "saem.app.types",
    "Hit": "saem.retrieval.types",
    "RetrievalResult": "saem.retrieval.types",
    "IngestReport": "saem.ingest.report",
    "IngestProgress": "saem.ingest.report",
    "FileResult": "saem.ingest.report",
    "Stats": "saem.ingest.report",
    "SessionInfo": "saem.memory.history",
    "SessionForbidden": "saem.memory.history",
    "Memory": "saem.memory.longterm",
    "TurnTrace": "saem.app.traces",
    "AgentResult": "saem.agents.types",
}

__all__ = [
    "Saem",
    "Settings",
    "Answer",
    "Source",
    "Citation",
    "BudgetReport",
    "Hit",
    "RetrievalResult",
    "IngestReport",
    "IngestProgress",
    "FileResult",
    "Stats",
    "SessionInfo",
    "SessionForbidden",
    "Memory",
    "TurnTrace",
    "AgentResult",
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


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
