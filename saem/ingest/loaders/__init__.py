"""Loaders: one file → ``LoadedDocument`` (text + structure), dispatched by suffix.

Usage::

    from saem.ingest.loaders import load_file, SUPPORTED_SUFFIXES

    doc = load_file(Path("매뉴얼.hwpx"), max_bytes=50 * 1024 * 1024)
    doc.text, doc.sections[0].heading_path

Contract of ``load_file``:

* Checks, in this order and before reading a byte: the file exists and is a regular file
  (``os.stat``; a FIFO or device is refused without being opened, so nothing blocks), the
  suffix is supported, the size is within ``max_bytes``, the file is not empty.
* Reads at most ``max_bytes + 1`` bytes through a non-blocking descriptor that is checked
  again with ``fstat`` (a file swapped for a FIFO after the first check is refused too).
* The returned text is cleaned (LF newlines, NFC) and is the coordinate system of every span.
* Raises ``FileRejected`` (refused: not found, not regular, unsupported, too big, empty,
  binary, archive limits) or ``ParseError`` (could not be read), both with ``path`` set and
  a short reason as message. Nothing else escapes for bad input.
* Stateless and thread-safe; symlinks are followed (the pipeline decides whether to allow them).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from saem.errors import FileRejected
from saem.ingest.loaders.docx import load_docx
from saem.ingest.loaders.html import load_html
from saem.ingest.loaders.hwpx import load_hwpx
from saem.ingest.loaders.pdf import load_pdf
from saem.ingest.loaders.tabular import load_csv, load_json, load_jsonl
from saem.ingest.loaders.text import load_markdown, load_text
from saem.ingest.types import LoadedDocument

__all__ = ["load_file", "load_bytes", "SUPPORTED_SUFFIXES", "Loader"]

Loader = Callable[[bytes, Path], LoadedDocument]

_LOADERS: dict[str, Loader] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".hwpx": load_hwpx,
    ".csv": load_csv,
    ".json": load_json,
    ".jsonl": load_jsonl,
    ".ndjson": load_jsonl,
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)

_UNSUPPORTED_HINTS = {
    ".hwp": "save it as .hwpx from Hangul (binary HWP 5 has no maintained pure-Python parser)",
    ".doc": "save it as .docx",
    ".xls": "save it as .csv",
    ".xlsx": "save the sheets as .csv",
    ".pptx": "export it as .pdf",
}


def load_file(path: Path, *, max_bytes: int, extra: Mapping[str, Loader] | None = None) -> LoadedDocument:
    """Load one file (see the module docstring for the full contract). ``extra`` maps more
    suffixes to loaders (``ingest_loaders``: LangChain loaders, :mod:`.langchain`); it wins
    over saem's own for the same suffix."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as err:
        raise FileRejected("file not found", path=path) from err
    except OSError as err:
        raise FileRejected(f"cannot stat the file ({err.strerror or type(err).__name__})", path=path) from err
    _check_regular(st.st_mode, path)
    suffix = path.suffix.lower()
    loader = (extra or {}).get(suffix) or _LOADERS.get(suffix)
    if loader is None:
        raise FileRejected(
            f"unsupported file type {suffix or '(no extension)'!r}",
            path=path,
            hint=_UNSUPPORTED_HINTS.get(
                suffix,
                "supported: "
                + " ".join(sorted(SUPPORTED_SUFFIXES))
                + "; other types can use a LangChain loader (ingest_loaders in saem.toml)",
            ),
        )
    _check_size(st.st_size, max_bytes, path)
    return load_bytes(_read(path, max_bytes), path, loader=loader)


def load_bytes(data: bytes, path: Path, *, loader: Loader | None = None) -> LoadedDocument:
    """Load already-read bytes as if they came from ``path`` (its suffix picks the loader).

    Same errors as ``load_file`` minus the file-system checks; useful for archives and tests.
    """
    if loader is None:
        loader = _LOADERS.get(path.suffix.lower())
        if loader is None:
            raise FileRejected(f"unsupported file type {path.suffix.lower()!r}", path=path)
    if not data.strip():
        raise FileRejected("empty file", path=path)
    doc = loader(data, path)
    if not doc.text.strip():
        raise FileRejected("empty: no text after extraction", path=path)
    return doc


def _check_regular(mode: int, path: Path) -> None:
    if stat.S_ISREG(mode):
        return
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    raise FileRejected(f"not a regular file ({kind})", path=path)


def _check_size(size: int, max_bytes: int, path: Path) -> None:
    if size > max_bytes:
        raise FileRejected(f"too big: {size:,} bytes > limit {max_bytes:,}", path=path, hint="raise max_bytes")
    if size == 0:
        raise FileRejected("empty file", path=path)


def _read(path: Path, max_bytes: int) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise FileRejected(f"cannot open the file ({err.strerror or type(err).__name__})", path=path) from err
    try:
        st = os.fstat(fd)
        _check_regular(st.st_mode, path)  # swapped for a FIFO since the stat?
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as err:
        raise FileRejected(f"cannot read the file ({err.strerror or type(err).__name__})", path=path) from err
    finally:
        os.close(fd)
    data = b"".join(chunks)
    _check_size(len(data), max_bytes, path)  # it may have grown since the stat
    return data
