"""Erasing user text: a session with everything that holds its text, and the copies of a forgotten memory.

    with db.write() as s:                           # one transaction for all of it
        erase_session(s, "alice", "s1")             # True: messages, session row, traces gone
        redact_traces(s, "alice", ["my PIN is 1234"])
    db.checkpoint()                                 # and out of saem.db-wal

Where a session's text lives: ``chat_messages`` (the turns), ``chat_sessions`` (its title, the
first line of the first question, and its JSON state) and ``chat_traces`` (each turn's question,
rendered prompt, answer and retrieved snippets). Nothing else is keyed by session: summaries are
computed per turn, never stored, and ``kv_store`` is keyed by the caller's namespace. Long-term
memories learnt in a session belong to the user, not the session, and outlive it (their
``source_session`` is only an id); ``LongTermMemory.forget`` removes them.

Where a memory's text is copied: the prompt and JSON data (``memories``, the budget's drops) of
every trace of a turn that recalled it. ``redact_traces`` replaces each occurrence in the user's
traces by :data:`REDACTED`. The user's own messages are not rewritten: what they typed stays in
their session until the session is deleted.

Both functions run inside the caller's write transaction and never commit; deleted bytes are
zeroed by the ``secure_delete`` pragma ``MemoryDB`` sets, and stay in the WAL until
``MemoryDB.checkpoint``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, inspect, or_, select
from sqlalchemy.orm import Session

from saem.store.chat import ChatMessage, ChatSession, TraceRow

__all__ = ["REDACTED", "erase_session", "redact_traces"]

REDACTED = "[forgotten]"


def erase_session(s: Session, user_id: str, session_id: str) -> bool:
    """Delete the user's session: its messages, its traces and its row (title, state). False,
    deleting nothing, when the user has no such session (another user's session included)."""
    owned = ChatSession.id == session_id, ChatSession.user_id == user_id
    if s.scalar(select(ChatSession.id).where(*owned)) is None:
        return False
    # explicit, so it does not depend on the connection's foreign_keys pragma
    s.execute(delete(ChatMessage).where(ChatMessage.session_id == session_id))
    if _has_traces(s):
        s.execute(delete(TraceRow).where(TraceRow.session_id == session_id, TraceRow.user_id == user_id))
    s.execute(delete(ChatSession).where(*owned))
    return True


def redact_traces(s: Session, user_id: str, texts: Iterable[str]) -> int:
    """Replace every occurrence of each of ``texts`` in the user's traces (question, prompt and
    every string of the JSON data) by :data:`REDACTED`; returns the traces changed. Other users'
    traces are not read. Empty texts are ignored."""
    wanted = sorted({t for t in texts if t.strip()}, key=len, reverse=True)  # longest first
    if not wanted or not _has_traces(s):
        return 0
    text_columns = (TraceRow.question, TraceRow.standalone_question, TraceRow.prompt)
    # LIKE narrows (a superset: case-insensitive); the exact replacement happens below
    hits = [c.contains(t, autoescape=True) for t in wanted for c in text_columns]
    hits += [TraceRow.data.contains(json.dumps(t, ensure_ascii=False)[1:-1], autoescape=True) for t in wanted]
    changed = 0
    for row in s.scalars(select(TraceRow).where(TraceRow.user_id == user_id, or_(*hits))):
        before = (row.question, row.standalone_question, row.prompt, row.data)
        row.question, row.standalone_question, row.prompt = (
            _scrub(row.question, wanted),
            _scrub(row.standalone_question, wanted),
            _scrub(row.prompt, wanted),
        )
        row.data = json.dumps(_scrub(json.loads(row.data or "{}"), wanted), ensure_ascii=False)
        if (row.question, row.standalone_question, row.prompt, row.data) != before:
            changed += 1
    s.flush()
    return changed


def _scrub(value: Any, texts: list[str]) -> Any:
    if isinstance(value, str):
        for t in texts:
            value = value.replace(t, REDACTED)
        return value
    if isinstance(value, list):
        return [_scrub(v, texts) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, texts) for k, v in value.items()}
    return value


def _has_traces(s: Session) -> bool:
    """Whether ``chat_traces`` exists (``TraceStore`` creates it; a memory-only database lacks it)."""
    return bool(inspect(s.connection()).has_table(TraceRow.__tablename__))
