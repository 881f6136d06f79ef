"""A namespaced key → bytes store in SQL: the ``BaseStore`` face of saem's memory database.

    store = SQLiteStore("./.saem/saem.db", namespace="user:alice")
    store.mset([("prefs/lang", b"ko"), ("prefs/theme", b"dark")])
    store.mget(["prefs/lang", "nope"])          # [b'ko', None]
    sorted(store.yield_keys(prefix="prefs/"))   # ['prefs/lang', 'prefs/theme']

Each namespace is its own key space (one per user, say): keys in another namespace are never
read, listed or deleted. ``mset`` is one transaction (upsert); ``yield_keys`` is case-sensitive,
treats ``%`` and ``_`` in the prefix literally (bound ``LIKE`` with an escape character), yields in
key order, and reads page by page so no transaction stays open while the caller iterates.
Async methods are ``BaseStore``'s defaults (the sync method in a thread).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.stores import BaseStore
from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from saem.store.chat import KeyValue, MemoryDB

__all__ = ["SQLiteStore", "like_prefix"]

_PAGE = 500


def like_prefix(prefix: str, escape: str = "\\") -> str:
    """A ``LIKE`` pattern matching strings that start with ``prefix`` literally."""
    escaped = prefix.replace(escape, escape * 2).replace("%", escape + "%").replace("_", escape + "_")
    return escaped + "%"


class SQLiteStore(BaseStore[str, bytes]):
    """``BaseStore[str, bytes]`` over the memory database. Thread-safe; values are raw bytes."""

    def __init__(self, db: MemoryDB | str | Path | URL, *, namespace: str = "default") -> None:
        self.db = MemoryDB.open(db)
        self.namespace = namespace

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        wanted = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        with self.db.read() as s:
            for i in range(0, len(wanted), _PAGE):
                chunk = wanted[i : i + _PAGE]
                rows = s.execute(
                    select(KeyValue.key, KeyValue.value).where(
                        KeyValue.namespace == self.namespace, KeyValue.key.in_(chunk)
                    )
                )
                found.update({k: bytes(v) for k, v in rows})
        return [found.get(k) for k in keys]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        latest: dict[str, bytes] = {}
        for key, value in key_value_pairs:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise TypeError(f"SQLiteStore values are bytes, not {type(value).__name__} (key {key!r})")
            latest[key] = bytes(value)  # the last value for a repeated key wins, as in a dict
        if not latest:
            return
        with self.db.write() as s:
            _upsert(s, [{"namespace": self.namespace, "key": k, "value": v} for k, v in latest.items()])

    def mdelete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        unique = list(dict.fromkeys(keys))
        with self.db.write() as s:
            for i in range(0, len(unique), _PAGE):
                s.execute(
                    delete(KeyValue).where(
                        KeyValue.namespace == self.namespace, KeyValue.key.in_(unique[i : i + _PAGE])
                    )
                )

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        where: list[Any] = [KeyValue.namespace == self.namespace]
        if prefix:
            # LIKE narrows (and is case-insensitive for ASCII on SQLite); substr makes it exact.
            where.append(KeyValue.key.like(like_prefix(prefix), escape="\\"))
            where.append(func.substr(KeyValue.key, 1, len(prefix)) == prefix)
        last: str | None = None
        while True:
            query = select(KeyValue.key).where(*where).order_by(KeyValue.key).limit(_PAGE)
            if last is not None:
                query = query.where(KeyValue.key > last)
            with self.db.read() as s:
                page = list(s.scalars(query))
            yield from page
            if len(page) < _PAGE:
                return
            last = page[-1]

    def __repr__(self) -> str:
        return f"SQLiteStore({self.db!r}, namespace={self.namespace!r})"


def _upsert(s: Session, rows: list[dict[str, Any]]) -> None:
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        stmt = insert(KeyValue)
        s.execute(
            stmt.on_conflict_do_update(index_elements=["namespace", "key"], set_={"value": stmt.excluded.value}), rows
        )
        return
    # other dialects: delete then insert, inside the caller's transaction
    keys = [(r["namespace"], r["key"]) for r in rows]
    s.execute(delete(KeyValue).where(tuple_(KeyValue.namespace, KeyValue.key).in_(keys)))
    s.add_all(KeyValue(**r) for r in rows)
