"""Safe reading of zip-of-XML formats (.docx, .hwpx): zip-bomb limits and defused XML.

Limits are checked twice: first against the sizes the archive declares, then while
decompressing (a forged header cannot smuggle more bytes past ``read_member``).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XMLSyntaxError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from saem.errors import FileRejected, ParseError

__all__ = ["ArchiveLimits", "SafeZip", "parse_xml", "local_name", "iter_paragraphs"]


@dataclass(frozen=True)
class ArchiveLimits:
    """Refuse archives beyond these (defaults fit any real document, not a zip bomb)."""

    max_members: int = 5_000
    max_total_bytes: int = 256 * 1024 * 1024  # sum of uncompressed member sizes
    max_ratio: float = 200.0  # uncompressed / compressed, for members over ``ratio_floor``
    ratio_floor: int = 1024 * 1024


class SafeZip:
    """A zip archive opened from bytes with bomb checks; ``read`` returns bounded member bytes.

    Raises ``ParseError`` for a corrupt or encrypted archive and ``FileRejected`` when a
    limit is exceeded.
    """

    def __init__(self, data: bytes, path: Path, kind: str, limits: ArchiveLimits = ArchiveLimits()) -> None:
        self.path = path
        self.limits = limits
        self._read_total = 0
        try:
            self._zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as err:
            raise ParseError(f"not a valid {kind} file (not a zip archive)", path=path) from err
        if len(infos) > limits.max_members:
            raise FileRejected(f"archive has {len(infos)} members (limit {limits.max_members})", path=path)
        if sum(i.file_size for i in infos) > limits.max_total_bytes:
            raise FileRejected("archive expands beyond the size limit (zip bomb?)", path=path)
        for info in infos:
            if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise FileRejected(f"absurd compression ratio in member {info.filename!r} (zip bomb?)", path=path)
        self._infos = {i.filename: i for i in infos}

    def names(self) -> list[str]:
        return list(self._infos)

    def read(self, name: str) -> bytes | None:
        """Bytes of member ``name`` (``None`` if absent), never more than the limits allow."""
        info = self._infos.get(name)
        if info is None:
            return None
        if info.flag_bits & 0x1:
            raise ParseError("the archive is encrypted (password-protected)", path=self.path)
        budget = self.limits.max_total_bytes - self._read_total
        cap = min(budget, int(self.limits.max_ratio * max(info.compress_size, 1)) + self.limits.ratio_floor)
        try:
            with self._zf.open(info) as fh:
                data = fh.read(cap + 1)
        except Exception as err:  # BadZipFile (bad CRC), zlib.error, EOFError, NotImplementedError, ...
            raise ParseError(f"corrupt archive member {name!r}", path=self.path) from err
        if len(data) > cap:
            raise FileRejected(f"archive member {name!r} expands beyond the limit (zip bomb?)", path=self.path)
        self._read_total += len(data)
        return data


def parse_xml(data: bytes, path: Path, what: str) -> Element:
    """Parse XML with defusedxml, refusing DTDs, entities and external references."""
    try:
        root: Element = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as err:
        raise ParseError(f"{what}: forbidden XML construct (DTD/entities)", path=path) from err
    except XMLSyntaxError as err:
        raise ParseError(f"{what}: malformed XML ({err})", path=path) from err
    return root


def local_name(tag: object) -> str:
    """``{namespace}name`` → ``name`` (so both transitional and strict OOXML namespaces work)."""
    if not isinstance(tag, str):
        return ""  # comments and processing instructions
    return tag.rpartition("}")[2]


_INLINE = {"tab": "\t", "br": "\n", "cr": "\n", "lineBreak": "\n", "noBreakHyphen": "-", "fwSpace": " ", "nbSpace": " "}


def iter_paragraphs(root: Element, *, skip: frozenset[str]) -> list[tuple[str, Element]]:
    """Text of every ``p`` element under ``root`` as ``(text, p_element)``, in closing order.

    Text comes from ``t`` elements (their mixed content included, as in HWPX) and inline
    breaks/tabs; subtrees whose local name is in ``skip`` are ignored. A paragraph nested in
    another (a table cell or text box inside a run) is reported on its own, before its host,
    and its text is not repeated in the host. The walk is iterative: no recursion limit.
    """
    out: list[tuple[str, Element]] = []
    buffers: list[list[str]] = []
    # (element, closing?, inside a "t"?)
    stack: list[tuple[Element, bool, bool]] = [(root, False, False)]
    while stack:
        elem, closing, in_t = stack.pop()
        name = local_name(elem.tag)
        if closing:
            if name == "p" and buffers:
                out.append(("".join(buffers.pop()), elem))
            if in_t and elem.tail and buffers:
                buffers[-1].append(elem.tail)
            continue
        if name in skip:
            if in_t and elem.tail and buffers:
                buffers[-1].append(elem.tail)
            continue
        if name == "p":
            buffers.append([])
        elif buffers:
            if name == "t":
                if elem.text:
                    buffers[-1].append(elem.text)
            elif name in _INLINE:
                buffers[-1].append(_INLINE[name])
        stack.append((elem, True, in_t))
        child_in_t = in_t or name == "t"
        stack.extend((child, False, child_in_t) for child in reversed(list(elem)))
    return out


def metadata_title(xml: bytes | None, path: Path, member: str) -> str | None:
    """The first non-empty ``<title>`` element (any namespace) of a metadata part, whitespace folded."""
    if not xml:
        return None
    for elem in parse_xml(xml, path, member).iter():
        if local_name(elem.tag) == "title" and elem.text and elem.text.strip():
            return " ".join(elem.text.split())
    return None
