"""Any LangChain document loader as a saem loader, for file types saem has no loader of its own for.

``ingest_loaders`` in ``saem.toml`` maps a suffix to a ``BaseLoader`` class, named as
``"module:Class"``; the class is called with the file's path, like every file loader in
``langchain_community.document_loaders``::

    ingest_loaders = { ".py" = "langchain_community.document_loaders:PythonLoader" }

The loader's documents become one ``LoadedDocument``: their texts joined by blank lines, each
document a section (its ``title`` or ``source`` heading, its page when it has one), cleaned like
every loader's output (LF newlines, NFC). saem's own checks still run first (regular file, size
limit, not empty); anything the third-party loader raises becomes a ``ParseError`` naming it.
The spec is read from configuration only, imported by name, never evaluated.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from langchain_core.document_loaders import BaseLoader

from saem.errors import ConfigError, ParseError
from saem.ingest.loaders._common import clean_text, reject_if_binary
from saem.ingest.types import LoadedDocument, Section

__all__ = ["import_loader", "langchain_loader", "loaders_from_settings"]

LoaderFactory = Callable[[str], BaseLoader]
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def import_loader(spec: str) -> LoaderFactory:
    """The ``BaseLoader`` class named by ``"module:Class"``; ``ConfigError`` when it cannot be used."""
    if not _SPEC.match(spec):
        raise ConfigError(
            f"ingest_loaders: {spec!r} is not a 'module:Class' name",
            hint='e.g. ".py" = "langchain_community.document_loaders:PythonLoader"',
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"ingest_loaders: cannot import {module_name!r} ({err})",
            hint="install the package that provides it (for community loaders: pip install langchain-community)",
        ) from err
    obj = getattr(module, attr, None)
    if not (isinstance(obj, type) and issubclass(obj, BaseLoader)):
        raise ConfigError(
            f"ingest_loaders: {spec!r} is not a LangChain BaseLoader class",
            hint="name a class from langchain_community.document_loaders, or your own BaseLoader subclass",
        )
    return obj


def langchain_loader(factory: LoaderFactory, name: str | None = None) -> Callable[[bytes, Path], LoadedDocument]:
    """A saem loader (``(data, path) -> LoadedDocument``) that runs ``factory(str(path))``."""
    label: str = name or str(getattr(factory, "__name__", "the loader"))

    def load(data: bytes, path: Path) -> LoadedDocument:
        try:
            docs = list(factory(str(path)).lazy_load())
        except Exception as err:  # a third-party loader may raise anything; the run goes on
            raise ParseError(f"{label} could not read it: {type(err).__name__}: {err}", path=path) from err
        parts: list[str] = []
        sections: list[Section] = []
        offset = 0
        for doc in docs:
            text = clean_text(doc.page_content or "").strip()
            if not text:
                continue
            if parts:
                offset += 2  # the blank line joining two documents
            sections.append(Section(offset, offset + len(text), _heading(doc.metadata, path), _page(doc.metadata)))
            parts.append(text)
            offset += len(text)
        joined = "\n\n".join(parts)
        reject_if_binary(joined, path)
        title = next((str(d.metadata["title"]) for d in docs if d.metadata.get("title")), None)
        return LoadedDocument(text=joined, sections=tuple(sections), title=title, metadata={"loader": label})

    return load


def loaders_from_settings(specs: Mapping[str, str]) -> dict[str, Callable[[bytes, Path], LoadedDocument]]:
    """``ingest_loaders`` (suffix -> ``"module:Class"``) as saem loaders, each imported once."""
    return {suffix: langchain_loader(import_loader(spec), spec) for suffix, spec in specs.items()}


def _heading(metadata: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    title = metadata.get("title") or metadata.get("section")
    return (str(title),) if title and str(title) != str(path) else ()


def _page(metadata: Mapping[str, Any]) -> int | None:
    """A 1-based page: ``page_number`` as given, or LangChain's 0-based ``page`` plus one."""
    number = metadata.get("page_number")
    if isinstance(number, int) and not isinstance(number, bool):
        return number
    page = metadata.get("page")
    if isinstance(page, int) and not isinstance(page, bool):
        return page + 1
    return None
