"""saem.store.filters: one filter contract compiled to SQL over a JSON column or typed columns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from saem.store.filters import ColumnFields, FilterFields, JsonFields, compile_filter

pytestmark = pytest.mark.unit


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    """The same facts twice: as typed columns and as a JSON object."""

    __tablename__ = "rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str]
    page: Mapped[int | None]
    meta: Mapped[str]


ROWS = [
    (1, "docs/a.md", 1),
    (2, "docs/sub/b.md", 2),
    (3, "notes/c.txt", None),
    (4, "docs/d.MD", 3),
    (5, "3", 3),
]
FIELDS: dict[str, FilterFields] = {
    "json": JsonFields(Row.meta),
    "columns": ColumnFields({"source": Row.source, "page": Row.page}),
}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    _Base.metadata.create_all(engine)
    with Session(engine) as s:
        for i, source, page in ROWS:
            s.add(Row(id=i, source=source, page=page, meta=json.dumps({"source": source, "page": page})))
        s.commit()
    yield engine
    engine.dispose()


@pytest.fixture(params=sorted(FIELDS))
def fields(request: pytest.FixtureRequest) -> FilterFields:
    return FIELDS[request.param]


def _ids(engine: Engine, flt: Any, fields: FilterFields) -> set[int]:
    with Session(engine) as s:
        return set(s.scalars(select(Row.id).where(compile_filter(flt, fields))))


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({}, {1, 2, 3, 4, 5}),
        ({"source": "docs/a.md"}, {1}),
        ({"source": {"$eq": "notes/c.txt"}}, {3}),
        ({"source": {"$glob": "docs/*.md"}}, {1, 2}),  # * crosses '/', and GLOB is case-sensitive
        ({"source": {"$in": ["docs/a.md", "3", "nowhere"]}}, {1, 5}),
        ({"source": {"$in": ()}}, set()),
        ({"page": None}, {3}),
        ({"page": 3}, {4, 5}),
        ({"page": 3.0}, {4, 5}),
        ({"page": "3"}, set()),  # a string is never a number (SQLite's affinity would say it is)
        ({"source": 3}, set()),  # and a number never a string
        ({"page": True}, set()),
        ({"page": {"$glob": "[12]"}}, {1, 2}),
        ({"page": {"$in": [1, None]}}, {1, 3}),
        ({"source": {"$glob": "docs/*", "$eq": "docs/d.MD"}, "page": 3}, {4}),
    ],
)
def test_json_and_column_fields_select_the_same_rows(
    engine: Engine, fields: FilterFields, flt: dict[str, Any], expected: set[int]
) -> None:
    assert _ids(engine, flt, fields) == expected


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"source; DROP TABLE rows": 1}, "filter key 'source; DROP TABLE rows' is not allowed"),
        ({"$or": [{"source": 1}]}, "filter key '$or' is not allowed"),
        ({"page": {"$gt": 1}}, "unknown filter operator '$gt' on 'page' (use $eq, $in or $glob)"),
        ({"page": {"$in": 1}}, "$in on 'page' takes a list, got int"),
        ({"source": {"$glob": ["*"]}}, "$glob on 'source' takes a string pattern"),
        ({"source": {"$eq": {"$ne": 1}}}, "filter value {'$ne': 1} is not a JSON scalar"),
        ({"source": {"$in": [["docs/a.md"]]}}, "filter value ['docs/a.md'] is not a JSON scalar"),
        ({"source": ["docs/a.md"]}, "filter value ['docs/a.md'] is not a JSON scalar"),
        ([("source", 1)], "filter must be a dict, got list"),
    ],
)
def test_bad_filters_raise_the_same_value_error_over_any_fields(engine: Engine, flt: Any, message: str) -> None:
    for fields in FIELDS.values():
        with pytest.raises(ValueError) as err:
            compile_filter(flt, fields)
        assert str(err.value).startswith(message)
    assert _ids(engine, {}, FIELDS["json"]) == {1, 2, 3, 4, 5}  # the table is still there


def test_column_fields_refuse_keys_they_do_not_have_and_json_fields_match_nothing(engine: Engine) -> None:
    with pytest.raises(ValueError, match=r"unknown filter key 'colour'; filter on one of \['page', 'source'\]"):
        compile_filter({"colour": {"$in": []}}, FIELDS["columns"])
    assert _ids(engine, {"colour": "red"}, FIELDS["json"]) == set()
    assert _ids(engine, {"source.nested": "x"}, FIELDS["json"]) == set()


def test_values_are_bound_never_spliced(fields: FilterFields) -> None:
    hostile = "x' OR 1=1 --"
    sql = str(compile_filter({"source": {"$in": [hostile]}, "page": {"$glob": hostile}}, fields).compile())
    assert hostile not in sql and "OR 1=1" not in sql
