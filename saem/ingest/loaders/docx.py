"""Word ``.docx`` loader: paragraphs and table cells in order, Heading styles as structure.

A ``.docx`` is a zip of XML; it is read with ``zipfile`` + defusedxml through ``SafeZip``
(bomb limits), not python-docx: we need only the text and styles, and this keeps every
byte of XML behind the same guards. Headings are paragraphs whose outline level (on the
paragraph or its style) is set, or whose style is named "heading N"; the "Title" style
(or ``dc:title`` in ``docProps/core.xml``) gives the title. Headers, footers, comments,
deleted text and field codes are not extracted.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree.ElementTree import Element

from saem.errors import ParseError
from saem.ingest.loaders._archive import SafeZip, iter_paragraphs, local_name, metadata_title, parse_xml
from saem.ingest.loaders._common import TextBuilder, sections_from_headings
from saem.ingest.types import LoadedDocument

__all__ = ["load_docx", "DOCX_MIME"]

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_SKIP = frozenset({"pPr", "rPr", "Fallback", "instrText", "delText", "sectPr", "commentReference"})
_HEADING_NAME = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_WS = re.compile(r"\s+")


def attr(elem: Element, name: str) -> str | None:
    """An attribute by local name, whatever its namespace."""
    for key, value in elem.attrib.items():
        if local_name(key) == name:
            return value
    return None


def _child(elem: Element, name: str) -> Element | None:
    for child in elem:
        if local_name(child.tag) == name:
            return child
    return None


def _outline_level(ppr: Element | None) -> int | None:
    """1-based heading level from ``w:outlineLvl`` (0-based there; 9 means body text)."""
    if ppr is None:
        return None
    lvl = _child(ppr, "outlineLvl")
    value = attr(lvl, "val") if lvl is not None else None
    if value is not None and value.isdigit() and int(value) < 9:
        return int(value) + 1
    return None


def _style_levels(styles_xml: bytes | None, path: Path) -> tuple[dict[str, int], set[str]]:
    """Map paragraph style id → heading level, and the ids of Title styles."""
    levels: dict[str, int] = {}
    titles: set[str] = set()
    if not styles_xml:
        return levels, titles
    for style in parse_xml(styles_xml, path, "word/styles.xml"):
        if local_name(style.tag) != "style" or attr(style, "type") not in (None, "paragraph"):
            continue
        style_id = attr(style, "styleId") or ""
        name_el = _child(style, "name")
        name = (attr(name_el, "val") or "") if name_el is not None else ""
        level = _outline_level(_child(style, "pPr"))
        if level is None and (m := _HEADING_NAME.match(name.strip())) is not None:
            level = int(m.group(1))
        if level is not None:
            levels[style_id] = level
        if name.strip().lower() == "title" or style_id.lower() == "title":
            titles.add(style_id)
    return levels, titles


def load_docx(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.docx``. Raises ``ParseError`` (not a zip, no ``word/document.xml``, bad XML) or
    ``FileRejected`` (archive limits)."""
    archive = SafeZip(data, path, ".docx")
    document = archive.read("word/document.xml")
    if document is None:
        raise ParseError("not a Word document (no word/document.xml)", path=path)
    root = parse_xml(document, path, "word/document.xml")
    levels, title_styles = _style_levels(archive.read("word/styles.xml"), path)
    title = metadata_title(archive.read("docProps/core.xml"), path, "docProps/core.xml")
    body = _child(root, "body")
    if body is None:
        raise ParseError("word/document.xml has no body", path=path)

    out = TextBuilder()
    headings: list[tuple[int, int, str]] = []
    for raw, para in iter_paragraphs(body, skip=_SKIP):
        text = raw.strip()
        if not text:
            continue
        ppr = _child(para, "pPr")
        pstyle = _child(ppr, "pStyle") if ppr is not None else None
        style_id = (attr(pstyle, "val") or "") if pstyle is not None else ""
        level = _outline_level(ppr) or levels.get(style_id)
        if style_id in title_styles:
            title = title or _WS.sub(" ", text)
        out.paragraph(text, level, headings)
    text_out = out.text()
    if title is None:
        title = next((t for _, level, t in headings if level == 1), None)
    return LoadedDocument(
        text=text_out,
        sections=sections_from_headings(len(text_out), headings),
        title=title,
        mime=DOCX_MIME,
    )
