"""Metadata filters compiled to SQL: one contract for every store face.

    where = compile_filter({"source": {"$glob": "docs/*.md"}, "page": 1}, JsonFields(Doc.meta_json))
    ids = session.scalars(select(Doc.id).where(where)).all()

The contract (``FaissVectorStore``'s ``filter=`` and ``HybridSearcher``'s ``filters=`` both
follow it, and both apply it in SQL *before* ranking):

* a filter is a dict, ANDed across its keys; ``{}`` selects everything;
* per key: ``v`` (same as ``{"$eq": v}``), ``{"$eq": v}``, ``{"$in": [v, ...]}`` (an empty list
  selects nothing), ``{"$glob": "docs/*.md"}`` (SQLite GLOB: case-sensitive, and ``*`` also
  matches ``/``); several operators in one dict are ANDed;
* values are JSON scalars (str, int, float, bool, None) and are compared by JSON type: ``True``
  is not the number 1, ``"3"`` is not 3, and ``None`` matches an explicit null (a missing key
  matches nothing);
* keys are identifiers, dotted for nesting (``a.b``); a face with a fixed set of fields (a
  :class:`ColumnFields`) refuses any other key.

Anything else raises ``ValueError`` with a message that says what was wrong (the same message
on every face). Keys are checked against a pattern and never reach SQL as text; values are
always bound parameters. Stateless and thread-safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, false, func, or_, true
from sqlalchemy.orm import QueryableAttribute

__all__ = ["ColumnFields", "FilterFields", "JsonFields", "Scalar", "compile_filter"]

Scalar = str | int | float | bool | None

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_LISTS = (list, tuple, set, frozenset)


class FilterFields(Protocol):
    """What a filter's keys name in one store: ``keys`` (None: any identifier) and the SQL of a
    key's equality with a checked scalar, and of its GLOB match."""

    @property
    def keys(self) -> frozenset[str] | None: ...

    def equals(self, key: str, value: Scalar) -> ColumnElement[bool]: ...

    def glob(self, key: str, pattern: str) -> ColumnElement[bool]: ...


class JsonFields:
    """Keys are paths into a JSON object column (``a.b`` is ``$.a.b``), compared by JSON type."""

    keys: frozenset[str] | None = None

    def __init__(self, column: SQLColumnExpression[Any]) -> None:
        self.column = column

    def equals(self, key: str, value: Scalar) -> ColumnElement[bool]:
        doc, path = self.column, f"$.{key}"
        if value is None:
            return func.json_type(doc, path) == "null"
        if isinstance(value, bool):  # before int: JSON true must not equal the number 1
            return func.json_type(doc, path) == ("true" if value else "false")
        if isinstance(value, str):
            return func.json_extract(doc, path) == value
        # a number, not JSON true/false (which json_extract gives as 1/0)
        return and_(func.json_extract(doc, path) == value, func.json_type(doc, path).in_(["integer", "real"]))

    def glob(self, key: str, pattern: str) -> ColumnElement[bool]:
        return func.json_extract(self.column, f"$.{key}").op("GLOB")(pattern)


class ColumnFields:
    """A fixed set of named SQL columns (or expressions) of text or number type.

    ``None`` matches SQL NULL; a string matches only a text column and a number only a number
    column (SQLite's type affinity would otherwise let ``"3"`` equal 3); ``True``/``False``
    match nothing, as no column holds JSON booleans.
    """

    def __init__(self, columns: Mapping[str, ColumnElement[Any] | QueryableAttribute[Any]]) -> None:
        self.columns: dict[str, ColumnElement[Any]] = {k: c.expression for k, c in columns.items()}
        self.keys: frozenset[str] | None = frozenset(self.columns)
        self._text = {k for k, c in self.columns.items() if issubclass(c.type.python_type, str)}

    def equals(self, key: str, value: Scalar) -> ColumnElement[bool]:
        col = self.columns[key]
        if value is None:
            return col.is_(None)
        if isinstance(value, bool) or isinstance(value, str) != (key in self._text):
            return false()
        return col == value

    def glob(self, key: str, pattern: str) -> ColumnElement[bool]:
        return self.columns[key].op("GLOB")(pattern)


def compile_filter(flt: Mapping[str, Any], fields: FilterFields) -> ColumnElement[bool]:
    """The SQL condition for the metadata filter ``flt`` over ``fields``; every key and value checked.

    Raises ``ValueError`` for a filter that is not a dict, a key that is not a (dotted)
    identifier or not one of ``fields.keys``, an unknown operator, or a value that is not a
    JSON scalar (``$in`` takes a list of them, ``$glob`` a string).
    """
    if not isinstance(flt, dict):
        raise ValueError(f"filter must be a dict, got {type(flt).__name__}")
    conds: list[ColumnElement[bool]] = []
    for key, spec in flt.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"filter key {key!r} is not allowed: use letters, digits, '_' and '.' for nesting")
        if fields.keys is not None and key not in fields.keys:
            raise ValueError(f"unknown filter key {key!r}; filter on one of {sorted(fields.keys)}")
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        for op, value in ops.items():
            if op == "$eq":
                conds.append(fields.equals(key, _scalar(value)))
            elif op == "$in":
                if not isinstance(value, _LISTS):
                    raise ValueError(f"$in on {key!r} takes a list, got {type(value).__name__}")
                conds.append(or_(*[fields.equals(key, _scalar(v)) for v in value]) if value else false())
            elif op == "$glob":
                if not isinstance(value, str):
                    raise ValueError(f"$glob on {key!r} takes a string pattern")
                conds.append(fields.glob(key, value))
            else:
                raise ValueError(f"unknown filter operator {op!r} on {key!r} (use $eq, $in or $glob)")
    return and_(*conds) if conds else true()


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    raise ValueError(f"filter value {value!r} is not a JSON scalar (str, int, float, bool or None)")
