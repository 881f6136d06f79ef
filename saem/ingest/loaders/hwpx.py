"""Hangul (Hancom Office) ``.hwpx`` loader: OWPML, a zip of XML (KS X 6101).

Body text lives in ``Contents/section{N}.xml`` as ``hp:p`` → ``hp:run`` → ``hp:t`` (with
``hp:tab``/``hp:lineBreak`` inside ``hp:t``); tables and footnotes nest further paragraphs.
Outline headings come from the paragraph style (``개요 N`` / ``Outline N`` in
``Contents/header.xml``) or from a paragraph shape with ``hh:heading type="OUTLINE"``.
Page headers and footers are not extracted. Read through ``SafeZip`` (bomb limits) and
defusedxml.

The binary ``.hwp`` (HWP 5, an OLE compound file) is not supported: the only pure-Python
parser on PyPI (pyhwp) has had no release since 2020.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree.ElementTree import Element

from saem.errors import ParseError
from saem.ingest.loaders._archive import SafeZip, iter_paragraphs, local_name, metadata_title, parse_xml
from saem.ingest.loaders._common import TextBuilder, sections_from_headings
from saem.ingest.loaders.docx import attr
from saem.ingest.types import LoadedDocument

__all__ = ["load_hwpx", "HWPX_MIME"]

HWPX_MIME = "application/hwp+zip"
_SECTION = re.compile(r"^Contents/section(\d+)\.xml$")
_OUTLINE_STYLE = re.compile(r"^(?:개요|outline)\s*([1-9]|10)$", re.IGNORECASE)
_SKIP = frozenset({"secPr", "header", "footer", "linesegarray", "parameters", "masterPage"})


def _heading_maps(header_xml: bytes | None, path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(style id → level, paraPr id → level) for outline headings, levels 1-based."""
    by_style: dict[str, int] = {}
    by_para: dict[str, int] = {}
    if not header_xml:
        return by_style, by_para
    for elem in parse_xml(header_xml, path, "Contents/header.xml").iter():
        name = local_name(elem.tag)
        if name == "style":
            for label in (attr(elem, "name"), attr(elem, "engName")):
                if label and (m := _OUTLINE_STYLE.match(label.strip())) is not None:
                    by_style[attr(elem, "id") or ""] = int(m.group(1))
                    break
        elif name == "paraPr":
            for child in elem.iter():
                if local_name(child.tag) == "heading" and (attr(child, "type") or "").upper() == "OUTLINE":
                    level = attr(child, "level") or ""
                    if level.isdigit():
                        by_para[attr(elem, "id") or ""] = int(level) + 1
    return by_style, by_para


def load_hwpx(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.hwpx``. Raises ``ParseError`` (not a zip, no section XML, bad XML) or
    ``FileRejected`` (archive limits)."""
    archive = SafeZip(data, path, ".hwpx")
    numbered = sorted((int(m.group(1)), n) for n in archive.names() if (m := _SECTION.match(n)) is not None)
    if not numbered:
        raise ParseError("not a Hangul document (no Contents/section*.xml)", path=path)
    by_style, by_para = _heading_maps(archive.read("Contents/header.xml"), path)
    title = metadata_title(archive.read("Contents/content.hpf"), path, "Contents/content.hpf")

    out = TextBuilder()
    headings: list[tuple[int, int, str]] = []
    for _, name in numbered:
        raw_xml = archive.read(name)
        root: Element = parse_xml(raw_xml or b"", path, name)
        for raw, para in iter_paragraphs(root, skip=_SKIP):
            text = raw.strip()
            if not text:
                continue
            level = by_style.get(attr(para, "styleIDRef") or "") or by_para.get(attr(para, "paraPrIDRef") or "")
            out.paragraph(text, level, headings)
        out.brk(2)
    text_out = out.text()
    return LoadedDocument(
        text=text_out,
        sections=sections_from_headings(len(text_out), headings),
        title=title,
        mime=HWPX_MIME,
    )
