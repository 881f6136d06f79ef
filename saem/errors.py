"""The exceptions saem raises, all under one root.

::

    SaemError                    anything saem raises on purpose
    ├── ConfigError              a setting is invalid (carries ``key``)
    ├── ModelError               a model is missing, corrupt or unusable (carries ``model``, ``path``)
    ├── IngestError              a document could not be ingested (carries ``path``)
    │   ├── FileRejected         refused before parsing: too big, binary, outside the root, ...
    │   └── ParseError           the loader could not read it
    ├── IndexCorrupt             the FAISS index disagrees with SQLite and cannot be rebuilt
    ├── StorageBusy              another writer holds the data dir
    ├── ToolError                a tool was refused, failed or timed out (carries ``tool``)
    ├── StructuredOutputError    model output did not validate (carries ``raw``)
    └── NotBuiltYet              a documented capability that this version does not have yet

Every error has a one-line message that says what happened, and a ``hint`` that says what
to do. The CLI prints ``message`` and ``hint`` on one line; ``--debug`` shows the traceback.
Third-party errors are wrapped with ``raise ... from err`` so the cause stays visible.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
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
]


class SaemError(Exception):
    """Root of every error saem raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message


class ConfigError(SaemError):
    """A setting is invalid or cannot be read."""

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key


class ModelError(SaemError):
    """A configured model is missing, corrupt, or cannot be used offline."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        path: str | Path | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.model = model
        self.path = Path(path) if path is not None else None


class IngestError(SaemError):
    """A document could not be ingested."""

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = Path(path) if path is not None else None


class FileRejected(IngestError):
    """A file was refused before parsing (size, type, location)."""


class ParseError(IngestError):
    """A loader could not extract text from a file."""


class IndexCorrupt(SaemError):
    """The vector index is unreadable or disagrees with the catalogue."""

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = Path(path) if path is not None else None


class StorageBusy(SaemError):
    """Another process holds the write lock on a data dir."""

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = Path(path) if path is not None else None


class ToolError(SaemError):
    """A tool call was refused, failed, or timed out."""

    def __init__(self, message: str, *, tool: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.tool = tool


class StructuredOutputError(SaemError):
    """Model output did not parse or validate against the requested schema."""

    def __init__(self, message: str, *, raw: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.raw = raw


class NotBuiltYet(SaemError):
    """A documented capability that this version of saem does not provide yet."""

    def __init__(self, feature: str, *, issue: str | None = None) -> None:
        where = f" (tracked in {issue})" if issue else ""
        super().__init__(f"{feature} is not built yet{where}", hint="see README.md, 'Status'")
        self.feature = feature
