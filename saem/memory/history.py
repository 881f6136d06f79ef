"""Chat sessions and their messages in SQL (SQLite by default).

    history = SQLiteChatMessageHistory("s1", "./.saem/saem.db", user_id="alice")
    history.add_messages([HumanMessage("안녕"), AIMessage("안녕하세요!")])
    history.messages[-1].content          # '안녕하세요!'
    history.set_state({"lang": "ko"})
    list_sessions(history.db, "alice")    # [SessionInfo(id='s1', title='안녕', ...)]

Messages are stored as ``message_to_dict`` JSON (every field round-trips: tool calls, usage
metadata, ``tool_call_id``, ids, response metadata), never pickled, and ordered by an
AUTOINCREMENT ``seq``. One ``add_messages`` call is one short ``BEGIN IMMEDIATE`` transaction, so
turns written at once by two threads or two processes all land, each call's messages contiguous.

A session belongs to the user that first wrote to it; opening it as another user raises
``SessionForbidden`` on every read and write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, HumanMessage, message_to_dict, messages_from_dict
from sqlalchemy import delete, func, insert, select, true, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from saem.errors import SaemError
from saem.memory.erase import erase_session
from saem.store.chat import ChatMessage, ChatSession, MemoryDB

__all__ = [
    "SQLiteChatMessageHistory",
    "SessionInfo",
    "SessionForbidden",
    "list_sessions",
    "session_messages",
    "delete_session",
    "TITLE_CHARS",
]

TITLE_CHARS = 60


class SessionForbidden(SaemError):
    """The session exists but belongs to another user."""

    def __init__(self, session_id: str, user_id: str) -> None:
        super().__init__(
            f"session {session_id!r} belongs to another user than {user_id!r}",
            hint="start a new session id",
        )
        self.session_id = session_id
        self.user_id = user_id


@dataclass(frozen=True)
class SessionInfo:
    """A session as ``list_sessions`` reports it. Times are Unix seconds."""

    id: str
    user_id: str
    title: str | None
    state: dict[str, Any]
    created: float
    updated: float
    n_messages: int


class SQLiteChatMessageHistory(BaseChatMessageHistory):
    """``BaseChatMessageHistory`` over SQLAlchemy: ``db`` is a ``MemoryDB``, a file path or a URL.

    Thread-safe (each call opens its own short session). The constructor writes nothing: the
    session row appears with the first message, ``set_state`` or ``set_title``. Its title is
    the first line of the first human message (up to ``TITLE_CHARS``) unless set explicitly.
    """

    def __init__(self, session_id: str, db: MemoryDB | str | Path | URL, user_id: str = "default") -> None:
        if not session_id:
            raise ValueError("session_id must be a non-empty string")
        self.session_id = session_id
        self.user_id = user_id
        self.db = MemoryDB.open(db)

    # --- BaseChatMessageHistory -------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the session, oldest first."""
        return self._load(None)

    def last(self, n: int) -> list[BaseMessage]:
        """The ``n`` most recent messages, oldest first (what a context builder usually wants)."""
        return self._load(max(n, 0))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self.append(messages)

    def append(self, messages: Sequence[BaseMessage], *, session: Session | None = None) -> list[int]:
        """Add ``messages`` in one transaction (``session``'s, when given: a caller's open write
        session, so a turn's writes commit together); returns their ``seq`` numbers (ascending)."""
        if not messages:
            return []
        now = time.time()
        rows = [
            {
                "session_id": self.session_id,
                "type": m.type,
                "data": json.dumps(message_to_dict(m), ensure_ascii=False),
                "created_at": now,
            }
            for m in messages
        ]
        title = _title(messages)
        with self.db.write(session) as s:
            created = self._ensure(s, now, title=title)
            seqs = list(s.scalars(insert(ChatMessage).returning(ChatMessage.seq, sort_by_parameter_order=True), rows))
            values: dict[str, Any] = {"updated_at": now}
            if not created and title is not None:
                # a session made by set_state before any message gets its title from the first one
                s.execute(
                    update(ChatSession)
                    .where(ChatSession.id == self.session_id, ChatSession.title.is_(None))
                    .values(title=title)
                )
            s.execute(update(ChatSession).where(ChatSession.id == self.session_id).values(**values))
        return seqs

    def clear(self) -> None:
        """Remove the session's messages; its state and title stay (``delete`` removes all)."""
        with self.db.write() as s:
            if self._owner(s) is None:
                return
            s.execute(delete(ChatMessage).where(ChatMessage.session_id == self.session_id))
            s.execute(update(ChatSession).where(ChatSession.id == self.session_id).values(updated_at=time.time()))

    # --- session helpers -----------------------------------------------------------------------

    def delete(self) -> bool:
        """Remove the session, its messages, state and traces (``delete_session``). Returns
        whether it existed for this user."""
        return delete_session(self.db, self.user_id, self.session_id)

    def info(self) -> SessionInfo | None:
        """The session's row, or ``None`` before anything was written to it."""
        with self.db.read() as s:
            if self._owner(s) is None:
                return None
            return _infos(s, ChatSession.id == self.session_id)[0]

    def get_state(self) -> dict[str, Any]:
        """The session's JSON state (``{}`` before any was set)."""
        with self.db.read() as s:
            if self._owner(s) is None:
                return {}
            raw = s.scalar(select(ChatSession.state).where(ChatSession.id == self.session_id))
            return dict(json.loads(raw or "{}"))

    def set_state(self, state: dict[str, Any]) -> None:
        """Replace the state (a JSON-serialisable dict; ``TypeError`` otherwise)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, not {type(state).__name__}")
        raw = json.dumps(state, ensure_ascii=False)  # raises TypeError before any write
        now = time.time()
        with self.db.write() as s:
            self._ensure(s, now)
            s.execute(update(ChatSession).where(ChatSession.id == self.session_id).values(state=raw, updated_at=now))

    def update_state(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into the state atomically; returns the new state."""
        json.dumps(changes, ensure_ascii=False)
        now = time.time()
        with self.db.write() as s:
            self._ensure(s, now)
            raw = s.scalar(select(ChatSession.state).where(ChatSession.id == self.session_id))
            state = {**json.loads(raw or "{}"), **changes}
            s.execute(
                update(ChatSession)
                .where(ChatSession.id == self.session_id)
                .values(state=json.dumps(state, ensure_ascii=False), updated_at=now)
            )
        return state

    @property
    def title(self) -> str | None:
        info = self.info()
        return info.title if info else None

    def set_title(self, title: str) -> None:
        now = time.time()
        with self.db.write() as s:
            self._ensure(s, now)
            s.execute(update(ChatSession).where(ChatSession.id == self.session_id).values(title=title, updated_at=now))

    # --- internals -----------------------------------------------------------------------------

    def _load(self, n: int | None) -> list[BaseMessage]:
        with self.db.read() as s:
            if self._owner(s) is None:
                return []
            query = select(ChatMessage.data).where(ChatMessage.session_id == self.session_id)
            if n is None:
                raw = list(s.scalars(query.order_by(ChatMessage.seq)))
            else:
                raw = list(s.scalars(query.order_by(ChatMessage.seq.desc()).limit(n)))[::-1]
        return messages_from_dict([json.loads(r) for r in raw])

    def _owner(self, s: Session) -> str | None:
        """The session's user (``None`` if it does not exist); raises if it is not ours."""
        owner = s.scalar(select(ChatSession.user_id).where(ChatSession.id == self.session_id))
        if owner is not None and owner != self.user_id:
            raise SessionForbidden(self.session_id, self.user_id)
        return owner

    def _ensure(self, s: Session, now: float, *, title: str | None = None) -> bool:
        """Create the session row inside the caller's write transaction; True if it was created."""
        if self._owner(s) is not None:
            return False
        s.add(
            ChatSession(
                id=self.session_id, user_id=self.user_id, title=title, state="{}", created_at=now, updated_at=now
            )
        )
        s.flush()
        return True

    def __repr__(self) -> str:
        return f"SQLiteChatMessageHistory({self.session_id!r}, {self.db!r}, user_id={self.user_id!r})"


def list_sessions(
    db: MemoryDB | str | Path | URL, user_id: str | None, *, limit: int | None = None
) -> list[SessionInfo]:
    """The user's sessions (everyone's when ``user_id`` is None), most recently updated first."""
    with MemoryDB.open(db).read() as s:
        return _infos(s, true() if user_id is None else ChatSession.user_id == user_id, limit=limit)


def session_messages(
    db: MemoryDB | str | Path | URL, session_id: str, *, user_id: str | None = None
) -> list[BaseMessage]:
    """The session's messages, oldest first ([] for an unknown session). With ``user_id``,
    another user's session raises ``SessionForbidden``; without, it is read as its owner."""
    memory_db = MemoryDB.open(db)
    if user_id is None:
        with memory_db.read() as s:
            user_id = s.scalar(select(ChatSession.user_id).where(ChatSession.id == session_id))
        if user_id is None:
            return []
    return SQLiteChatMessageHistory(session_id, memory_db, user_id).messages


def delete_session(db: MemoryDB | str | Path | URL, user_id: str, session_id: str) -> bool:
    """Delete one of the user's sessions with everything that holds its text: messages, title,
    state and turn traces (see ``saem.memory.erase``), in one write transaction; then checkpoint
    the WAL so the deleted text leaves ``saem.db-wal`` too (skipped, not waited for, when busy).
    False, deleting nothing, if there is no such session for this user (another user's session
    is left alone). Long-term memories learnt in the session stay: they belong to the user."""
    memory_db = MemoryDB.open(db)
    with memory_db.write() as s:
        deleted = erase_session(s, user_id, session_id)
    if deleted:
        memory_db.checkpoint()
    return deleted


def _infos(s: Session, where: Any, *, limit: int | None = None) -> list[SessionInfo]:
    n_messages = select(func.count(ChatMessage.seq)).where(ChatMessage.session_id == ChatSession.id).scalar_subquery()
    query = select(ChatSession, n_messages).where(where).order_by(ChatSession.updated_at.desc(), ChatSession.id)
    if limit is not None:
        query = query.limit(limit)
    return [
        SessionInfo(
            id=row.id,
            user_id=row.user_id,
            title=row.title,
            state=dict(json.loads(row.state or "{}")),
            created=row.created_at,
            updated=row.updated_at,
            n_messages=int(n),
        )
        for row, n in s.execute(query).all()
    ]


def _title(messages: Sequence[BaseMessage]) -> str | None:
    for m in messages:
        if isinstance(m, HumanMessage):
            text = m.text.strip()
            if text:
                line = text.splitlines()[0].strip()
                return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"
    return None
