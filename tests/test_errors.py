"""The error tree: one root, fields carried, messages that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

import saem
from saem import errors

pytestmark = pytest.mark.unit


def test_every_public_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SaemError), name
        assert getattr(saem, name) is cls, f"saem.{name} is not re-exported"


def test_ingest_subtree() -> None:
    assert issubclass(errors.FileRejected, errors.IngestError)
    assert issubclass(errors.ParseError, errors.IngestError)
    assert not issubclass(errors.ModelError, errors.IngestError)


def test_fields_and_message() -> None:
    err = errors.ModelError("model not found: /m.gguf", model="/m.gguf", path="/m.gguf", hint="give a path")
    assert err.path == Path("/m.gguf") and err.model == "/m.gguf"
    assert str(err) == "model not found: /m.gguf — give a path"
    assert errors.StructuredOutputError("bad json", raw="{oops").raw == "{oops"
    assert errors.ToolError("refused", tool="forget").tool == "forget"
    assert errors.FileRejected("too big", path="a.txt").path == Path("a.txt")
    assert "not built yet" in str(errors.NotBuiltYet("chat", issue="issue 9"))


def test_wrapping_keeps_the_cause() -> None:
    with pytest.raises(errors.ParseError) as info:
        try:
            raise ValueError("bad byte")
        except ValueError as cause:
            raise errors.ParseError("cannot parse", path="x") from cause
    assert isinstance(info.value.__cause__, ValueError)
