"""The chat tables: sessions, messages, long-term memories, the key-value store, turn traces.

Declared on the one metadata (``saem.store.db.Base``), so ``Database.open`` creates them beside
the catalogue's, in the same ``saem.db``:

* ``chat_sessions`` — one row per conversation: ``id`` (the session id), ``user_id``, ``title``,
  ``state`` (a JSON object), ``created_at`` / ``updated_at`` (Unix seconds);
* ``chat_messages`` — ``seq`` (AUTOINCREMENT: the order of messages, never reused), the session,
  the message ``type`` and ``data`` (``langchain_core.messages.message_to_dict`` as JSON; no pickle);
* ``memories`` — long-term facts per user: text, embedding (float32 little-endian, L2-normalised),
  the embedder id, timestamps, and the session/turn the fact came from;
* ``kv_store`` — ``(namespace, key) → bytes`` for ``SQLiteStore``;
* ``chat_traces`` — one row per chat turn (``saem.app.traces.TraceStore``); erasing a session
  or a memory (``saem.memory.erase``) reaches it.

    db = MemoryDB.open("./.saem/saem.db")     # the one handle, saem.store.db.Database; or any URL
    with db.write() as s:                     # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)
        s.add(ChatSession(id="s1", user_id="u", state="{}", created_at=0.0, updated_at=0.0))
    with db.read() as s:
        s.get(ChatSession, "s1")

Deleted rows (a deleted session, a forgotten memory) are overwritten with zeros
(``secure_delete``); the WAL still holds them until :meth:`Database.checkpoint`.
"""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from saem.store.db import Base, Database

__all__ = ["MemoryBase", "ChatSession", "ChatMessage", "MemoryRow", "KeyValue", "TraceBase", "TraceRow", "MemoryDB"]


# Kept as names for the one metadata (``saem.store.db.Base``), which every table shares.
MemoryBase = Base
TraceBase = Base


class ChatSession(MemoryBase):
    __tablename__ = "chat_sessions"
    __table_args__ = (Index("ix_chat_sessions_user", "user_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[str] = mapped_column(String)
    title: Mapped[str | None]
    state: Mapped[str] = mapped_column(Text, default="{}")  # a JSON object
    created_at: Mapped[float]
    updated_at: Mapped[float]


class ChatMessage(MemoryBase):
    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_session", "session_id", "seq"), {"sqlite_autoincrement": True})

    seq: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String)
    data: Mapped[str] = mapped_column(Text)  # message_to_dict(...) as JSON
    created_at: Mapped[float]


class MemoryRow(MemoryBase):
    __tablename__ = "memories"
    __table_args__ = (Index("ix_memories_user", "user_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, L2-normalised
    embed_model: Mapped[str] = mapped_column(String)
    created_at: Mapped[float]
    updated_at: Mapped[float]
    source_session: Mapped[str | None]
    source_turn: Mapped[int | None]


class KeyValue(MemoryBase):
    __tablename__ = "kv_store"

    namespace: Mapped[str] = mapped_column(String, primary_key=True)
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class TraceRow(TraceBase):
    """A turn trace; see ``saem.app.traces`` for the columns' meaning."""

    __tablename__ = "chat_traces"
    __table_args__ = (Index("ix_chat_traces_session", "session_id", "created_at"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    session_id: Mapped[str] = mapped_column(String)
    user_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[float]
    question: Mapped[str] = mapped_column(Text)
    standalone_question: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String)
    abstained: Mapped[bool] = mapped_column(Boolean)
    prompt: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int]
    data: Mapped[str] = mapped_column(Text)  # JSON: budget, timings, retrieved, calls, tool_calls, answer, ...


# Memory is read and written through the one database handle (which creates these tables too).
MemoryDB = Database
