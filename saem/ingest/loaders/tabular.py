"""CSV, JSON and JSON Lines loaders: records rendered as ``key: value`` lines.

A chunk of a big table rarely contains its header row, so each CSV row is rendered with its
column names (``name: 김민수 | age: 31``), one row per line. JSON scalars are rendered one per
line as ``path: value`` (``users[0].name: 김민수``); JSON Lines records are separated by a blank
line. Deep nesting cannot crash: parsing errors (including ``RecursionError``) become
``ParseError`` and the rendering walk is iterative, with long paths shortened to their tail.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from saem.errors import ParseError
from saem.ingest.loaders.text import decode_bytes
from saem.ingest.types import LoadedDocument

__all__ = ["load_csv", "load_json", "load_jsonl"]

_SNIFF_BYTES = 64 * 1024
_MAX_PATH_PARTS = 8


def load_csv(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.csv`` (delimiter sniffed among ``, ; tab |``). The first row is the header."""
    text, encoding, meta = decode_bytes(data, path)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    lines: list[str] = []
    try:
        reader = csv.reader(io.StringIO(text), dialect)
        header = next(reader, None)
        if header is None:
            return LoadedDocument(text="", mime="text/csv", encoding=encoding, metadata=meta)
        names = [h.strip() or f"column {i + 1}" for i, h in enumerate(header)]
        rows = 0
        for row in reader:
            cells = [
                f"{names[i] if i < len(names) else f'column {i + 1}'}: {_one_line(v)}"
                for i, v in enumerate(row)
                if v.strip()
            ]
            if cells:
                lines.append(" | ".join(cells))
                rows += 1
    except csv.Error as err:
        raise ParseError(f"malformed CSV: {err}", path=path) from err
    if not lines:  # a header alone (or a one-column list): keep the text as it is
        lines = [" | ".join(names)]
    meta = {**meta, "rows": str(rows), "columns": str(len(names))}
    return LoadedDocument(text="\n".join(lines), mime="text/csv", encoding=encoding, metadata=meta)


def _one_line(value: str) -> str:
    return " ".join(value.split())


def load_json(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.json`` document."""
    text, encoding, meta = decode_bytes(data, path)
    value = _parse(text, path, where="")
    return LoadedDocument(text=_render(value), mime="application/json", encoding=encoding, metadata=meta)


def load_jsonl(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.jsonl`` file: one JSON value per non-blank line."""
    text, encoding, meta = decode_bytes(data, path)
    blocks: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            rendered = _render(_parse(line, path, where=f" on line {number}"))
            if rendered:
                blocks.append(rendered)
    meta = {**meta, "records": str(len(blocks))}
    return LoadedDocument(text="\n\n".join(blocks), mime="application/x-ndjson", encoding=encoding, metadata=meta)


def _parse(text: str, path: Path, *, where: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as err:
        raise ParseError(f"JSON nested too deeply{where}", path=path) from err
    except ValueError as err:  # JSONDecodeError
        raise ParseError(f"invalid JSON{where}: {err}", path=path) from err


def _render(value: Any) -> str:
    """``path: value`` lines for every scalar, in document order (iterative walk)."""
    lines: list[str] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while stack:
        parts, item = stack.pop()
        if isinstance(item, dict):
            stack.extend(((*parts, _key(k, bool(parts))), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend(
                ((*parts[:-1], f"{parts[-1] if parts else ''}[{i}]"), v) for i, v in reversed(list(enumerate(item)))
            )
        else:
            scalar = _scalar(item)
            if scalar == "":
                continue
            label = "".join(parts if len(parts) <= _MAX_PATH_PARTS else ("…", *parts[-_MAX_PATH_PARTS:]))
            lines.append(f"{label}: {scalar}" if label else scalar)
    return "\n".join(lines)


def _key(key: str, dotted: bool) -> str:
    return f".{key}" if dotted else key


def _scalar(item: Any) -> str:
    if item is None:
        return "null"
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str):
        return " ".join(item.split())
    return str(item)
