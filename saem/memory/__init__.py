"""Memory: chat sessions and their history, long-term facts per user, and a key–value store.

    from saem.memory import LongTermMemory, MemoryDB, SQLiteChatMessageHistory, SQLiteStore
    db = MemoryDB.open(settings.db_path)              # one handle, shared by all three
    history = SQLiteChatMessageHistory("s1", db, "alice")
    ltm = LongTermMemory(db, embeddings)
    store = SQLiteStore(db, namespace="user:alice")

Everything lives in one SQL database (``saem.db`` by default; any SQLAlchemy URL). Imports are
lazy so ``import saem.memory`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saem._lazy import lazy_attribute

if TYPE_CHECKING:
    from saem.memory.commands import Command, parse_command
    from saem.memory.extraction import extraction_prompt
    from saem.memory.history import (
        SessionForbidden,
        SessionInfo,
        SQLiteChatMessageHistory,
        delete_session,
        list_sessions,
    )
    from saem.memory.longterm import (
        LLMDecider,
        LongTermMemory,
        Memory,
        MemoryDecision,
        Proposal,
        ThresholdDecider,
    )
    from saem.memory.store import SQLiteStore
    from saem.store.chat import MemoryDB

_LAZY = {
    "MemoryDB": "saem.store.chat",
    "SQLiteChatMessageHistory": "saem.memory.history",
    "SessionInfo": "saem.memory.history",
    "SessionForbidden": "saem.memory.history",
    "list_sessions": "saem.memory.history",
    "delete_session": "saem.memory.history",
    "LongTermMemory": "saem.memory.longterm",
    "Memory": "saem.memory.longterm",
    "MemoryDecision": "saem.memory.longterm",
    "Proposal": "saem.memory.longterm",
    "ThresholdDecider": "saem.memory.longterm",
    "LLMDecider": "saem.memory.longterm",
    "Command": "saem.memory.commands",
    "parse_command": "saem.memory.commands",
    "extraction_prompt": "saem.memory.extraction",
    "SQLiteStore": "saem.memory.store",
}

__all__ = [
    "MemoryDB",
    "SQLiteChatMessageHistory",
    "SessionInfo",
    "SessionForbidden",
    "list_sessions",
    "delete_session",
    "LongTermMemory",
    "Memory",
    "MemoryDecision",
    "Proposal",
    "ThresholdDecider",
    "LLMDecider",
    "Command",
    "parse_command",
    "extraction_prompt",
    "SQLiteStore",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
