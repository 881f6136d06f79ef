"""PDF loader: the text layer, page by page, with pypdf (pure Python).

Pages are joined with a blank line; each page is one ``Section`` with its 1-based ``page``.
If the PDF has an outline (bookmarks), each page's ``heading_path`` is the path of the last
outline entry that starts on or before that page — page-granular, since the outline does
not say where on the page a heading sits. A PDF whose pages have no text (a scan without
OCR) raises ``ParseError``; an encrypted PDF is read only if it opens with the empty password.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

from saem.errors import ParseError
from saem.ingest.loaders._common import clean_text, reject_if_binary
from saem.ingest.types import LoadedDocument, Section

__all__ = ["load_pdf"]

_WS = re.compile(r"\s+")
_PAGE_SEPARATOR = "\n\n"


def load_pdf(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.pdf``. Pages that fail to extract are skipped and listed in
    ``metadata["pages_failed"]``; if every page fails or none has text, ``ParseError``."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed-but-readable files are common
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is encrypted", path=path, hint="save an unencrypted copy")
        pages = list(reader.pages)
    except ParseError:
        raise
    except Exception as err:  # PyPdfError, but also KeyError/ValueError/RecursionError on hostile files
        raise ParseError(f"not a readable PDF ({type(err).__name__})", path=path) from err

    outline = _outline_by_page(reader)
    parts: list[str] = []
    sections: list[Section] = []
    failed: list[str] = []
    offset = 0
    path_now: tuple[str, ...] = ()
    for number, page in enumerate(pages, start=1):
        path_now = outline.get(number, path_now)
        try:
            raw = page.extract_text() or ""
        except Exception:  # noqa: BLE001 - one bad page must not sink the document
            failed.append(str(number))
            continue
        text = clean_text(raw).strip()
        if not text:
            continue
        if parts:
            parts.append(_PAGE_SEPARATOR)
            offset += len(_PAGE_SEPARATOR)
        parts.append(text)
        sections.append(Section(offset, offset + len(text), path_now, page=number))
        offset += len(text)
    if not parts:
        reason = "no page could be read" if failed and len(failed) == len(pages) else "no text layer (scanned PDF?)"
        raise ParseError(reason, path=path, hint="run OCR first (e.g. ocrmypdf)")
    text_out = "".join(parts)
    reject_if_binary(text_out, path)
    meta = {"pages": str(len(pages))}
    if failed:
        meta["pages_failed"] = ",".join(failed)
    return LoadedDocument(
        text=text_out,
        sections=tuple(sections),
        title=_title(reader),
        mime="application/pdf",
        metadata=meta,
    )


def _title(reader: Any) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata is not None else None
    except Exception:  # noqa: BLE001 - broken info dictionaries are common
        return None
    if isinstance(title, str) and title.strip():
        return _WS.sub(" ", title).strip()
    return None


def _outline_by_page(reader: Any) -> dict[int, tuple[str, ...]]:
    """1-based page → heading path of the last outline entry starting on that page."""
    try:
        outline = reader.outline
    except Exception:  # noqa: BLE001 - a broken outline only costs us headings
        return {}
    by_page: dict[int, tuple[str, ...]] = {}
    # The outline is a list of entries; a nested list holds the children of the entry before it.
    stack: list[tuple[list[Any], int, tuple[str, ...]]] = [(list(outline), 0, ())]
    seen = 0
    while stack and seen < 100_000:
        items, index, parent = stack.pop()
        last: tuple[str, ...] = parent
        while index < len(items):
            item = items[index]
            index += 1
            seen += 1
            if isinstance(item, list):
                stack.append((items, index, parent))
                stack.append((item, 0, last))
                break
            title = _WS.sub(" ", str(getattr(item, "title", "") or "")).strip()
            if not title:
                continue
            last = (*parent, title)
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # noqa: BLE001
                continue
            if isinstance(page, int) and page >= 0:
                by_page[page + 1] = last
    return by_page
