"""HTML loader: visible text in reading order, with h1–h6 as structure.

Parsed with selectolax's Lexbor engine (a full HTML5 parser in C: malformed markup is
repaired the way browsers do it, and thousands of pages parse in seconds). Dropped before
extraction: ``nav header footer aside script style noscript form template iframe svg``
(``header``/``footer`` only outside ``article``/``main``, where they hold real titles), elements
whose ARIA role is navigation, banner, contentinfo, complementary or search, and a few
well-known chrome classes (Sphinx sidebars and ``¶`` links, DocBook nav headers/footers).
Link lists are navigation too: a list or table (``ul ol dl table``) whose visible text is
mostly link text (at least ``LINK_DENSITY`` of it, over at least ``MIN_LINKS`` links) is dropped,
the link-density rule of boilerplate removers (jusText, Readability). So a generated index, a
table of contents or a "see the pages below" list does not outrank the pages it points to;
an index page made only of such lists loads as an empty document (skipped, with a reason).
Whitespace collapses as a browser renders it, except inside ``pre``/``textarea``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saem.errors import ParseError
from saem.ingest.loaders._common import TextBuilder, sections_from_headings
from saem.ingest.loaders.text import decode_bytes
from saem.ingest.types import LoadedDocument

if TYPE_CHECKING:
    from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = ["load_html"]

_DROP_TAGS = "nav, aside, script, style, noscript, form, template, iframe, svg, object, canvas, button, select"
_DROP_ROLES = ("navigation", "banner", "contentinfo", "complementary", "search")
_DROP_CLASSES = frozenset(
    {"headerlink", "sphinxsidebar", "related", "navheader", "navfooter", "breadcrumb", "breadcrumbs", "skip-link",
     "footer"}
)
# The two rules above as one selector, matched in C: a role compared whole and case-blind, a
# class as one of the element's space-separated classes, case-sensitive.
_CHROME = ", ".join([f"[role={r} i]" for r in _DROP_ROLES] + [f"[class~={c}]" for c in sorted(_DROP_CLASSES)])
_BLOCK = frozenset(
    "address article blockquote body caption center dd details dialog dir div dl dt fieldset figcaption figure "
    "hgroup li main menu ol p section summary table tbody thead tfoot tr ul legend".split()
)
_PARAGRAPH = frozenset({"p", "table", "blockquote", "pre", "ul", "ol", "dl", "figure", "section", "article"})
_CELL = frozenset({"td", "th"})
_HEADING = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_PRESERVE = frozenset({"pre", "textarea", "listing", "plaintext"})
_WS = re.compile(r"[ \t\n\r\f]+")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*?(/?)>")
# End tags HTML lets authors omit (the parser closes them implicitly) and void elements:
# neither adds nesting, so a naive count must skip them.
_NO_NESTING = frozenset(
    "p li dt dd tr td th thead tbody tfoot option optgroup rb rt rp colgroup caption html head body "
    "area base br col embed hr img input link meta param source track wbr".split()
)
MAX_DEPTH = 4096
LINK_DENSITY = 0.6  # share of a list's text inside links from which it counts as navigation
MIN_LINKS = 4  # fewer links than this never make a list navigation (a "see also" pair, say)
_LISTS = "ul, ol, dl, table"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def load_html(data: bytes, path: Path) -> LoadedDocument:
    """Load an ``.html``/``.htm`` file. The title is ``<title>``, else the first ``h1``."""
    m = _META_CHARSET.search(data[:4096])
    declared = m.group(1).decode("ascii", "replace") if m else None
    source, encoding, meta = decode_bytes(data, path, declared=declared)
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ParseError("HTML support needs selectolax", path=path, hint="pip install selectolax") from err
    if source.count("<") > MAX_DEPTH and _nesting_depth(source) > MAX_DEPTH:  # fewer tags cannot nest deeper
        # HTML5 tree building costs O(depth) per tag, so a hostile tower of tags would stall us.
        raise ParseError(f"HTML nested deeper than {MAX_DEPTH} elements", path=path)
    tree = LexborHTMLParser(source)
    title_node = tree.css_first("head > title") or tree.css_first("title")
    title = _collapse(title_node.text(deep=True)) if title_node is not None else ""
    root = tree.body
    if root is None:
        return LoadedDocument(text="", mime="text/html", encoding=encoding, metadata=meta)
    _drop_chrome(tree)
    text, headings = _extract(root)
    title = title or next((t for _, level, t in headings if level == 1), "")
    return LoadedDocument(
        text=text,
        sections=sections_from_headings(len(text), headings),
        title=title or None,
        mime="text/html",
        encoding=encoding,
        metadata=meta,
    )


def _nesting_depth(source: str) -> int:
    """An upper-bound estimate of element nesting from a linear scan of the tags.

    Depth after each tag is the running sum of +1 (start tag) / -1 (end tag), floored at 0:
    ``S(t) - min(0, min S(s≤t))``, computed with numpy over the tags ``findall`` gives.
    """
    steps = [
        0 if selfclosing or name.lower() in _NO_NESTING else -1 if slash else 1
        for slash, name, selfclosing in _TAG.findall(source)
    ]
    if not steps:
        return 0
    running = np.cumsum(np.asarray(steps, dtype=np.int64))
    floor = np.minimum.accumulate(np.minimum(running, 0))
    return int((running - floor).max())


def _collapse(s: str) -> str:
    return _WS.sub(" ", s).strip()


def _drop_chrome(tree: LexborHTMLParser) -> None:
    doomed = list(tree.css(_DROP_TAGS))
    for node in tree.css("header, footer"):
        parent = node.parent
        while parent is not None and parent.tag not in ("article", "main"):
            parent = parent.parent
        if parent is None:
            doomed.append(node)
    doomed.extend(tree.css(_CHROME))
    doomed.extend(node for node in tree.css(_LISTS) if _is_link_list(node))
    # Decompose only the outermost doomed nodes: a Node whose ancestor was already freed
    # must not be touched again.
    ids = {node.mem_id for node in doomed}
    outermost: dict[int, LexborNode] = {}
    for node in doomed:
        parent = node.parent
        while parent is not None and parent.mem_id not in ids:
            parent = parent.parent
        if parent is None:
            outermost[node.mem_id] = node
    for node in outermost.values():
        node.decompose()


def _is_link_list(node: LexborNode) -> bool:
    """Whether ``node`` (a list or table) is mostly link text: ``LINK_DENSITY`` over ``MIN_LINKS`` links."""
    links = node.css("a[href]")
    if len(links) < MIN_LINKS:
        return False
    total = len(_WS.sub("", node.text(deep=True)))
    linked = sum(len(_WS.sub("", a.text(deep=True))) for a in links)
    return total > 0 and linked >= LINK_DENSITY * total


def _extract(root: LexborNode) -> tuple[str, list[tuple[int, int, str]]]:
    """Walk the tree iteratively (deep nesting cannot overflow the stack)."""
    out = TextBuilder()
    headings: list[tuple[int, int, str]] = []
    preserve = 0
    # (node, closing?) — closing entries restore state after an element's children.
    stack: list[tuple[LexborNode, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        tag = node.tag or ""
        if closing:
            if tag in _PRESERVE:
                preserve -= 1
            if tag in _HEADING or tag in _PARAGRAPH:
                out.brk(2)
            elif tag in _BLOCK:
                out.brk(1)
            elif tag in _CELL:
                out.space()
            continue
        if tag == "-text":
            raw = node.text_content or ""
            if preserve:
                out.add(raw)
            else:
                collapsed = _WS.sub(" ", raw)
                if collapsed.startswith(" "):
                    out.space()
                body = collapsed.strip()
                if body:
                    out.add(body)
                    if collapsed.endswith(" "):
                        out.space()
            continue
        if tag.startswith("-") or tag.startswith("!"):
            continue  # comments, doctype
        if tag == "br":
            out.brk(1)
            continue
        if tag == "hr":
            out.brk(2)
            continue
        level = _HEADING.get(tag)
        if level is not None:
            heading = _collapse(node.text(deep=True))
            out.brk(2)
            if heading:
                headings.append((out.flush(), level, heading))
        elif tag in _PARAGRAPH:
            out.brk(2)
        elif tag in _BLOCK:
            out.brk(1)
        elif tag in _CELL:
            out.space()
        if tag in _PRESERVE:
            preserve += 1
        stack.append((node, True))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, False) for c in reversed(children))
    return out.text(), headings
