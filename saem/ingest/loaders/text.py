"""Plain text and Markdown loaders, and the byte → str decoding every text format shares.

Encoding detection order (first that succeeds wins):

1. a UTF-8 BOM → strict ``utf-8-sig``;  a UTF-32/UTF-16 BOM → that codec, strictly;
2. NUL bytes anywhere → ``FileRejected`` (binary behind a text extension);
3. strict UTF-8 (also covers pure ASCII);
4. strict cp949 (a superset of EUC-KR), accepted only if most non-ASCII characters decode to
   Hangul — Latin-1 text often "decodes" as cp949 into nonsense Hanja;
5. UTF-8 with a few (≤ 0.1%) invalid bytes replaced by U+FFFD (noted in ``metadata``);
6. charset-normalizer's best guess;
7. otherwise ``ParseError``.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from saem.errors import ParseError
from saem.ingest.loaders._common import clean_text, reject_if_binary, sections_from_headings
from saem.ingest.types import LoadedDocument

__all__ = ["decode_bytes", "load_text", "load_markdown"]

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_MAX_REPLACED_RATIO = 0.001


def decode_bytes(data: bytes, path: Path, *, declared: str | None = None) -> tuple[str, str, dict[str, str]]:
    """Decode ``data`` to cleaned text; return ``(text, encoding, metadata)``.

    ``declared`` (an HTML ``<meta charset>``, say) is tried right after strict UTF-8. Raises
    ``FileRejected`` for binary content and ``ParseError`` when no encoding fits.
    """
    text, encoding, meta = _decode(data, path, declared)
    text = clean_text(text)
    reject_if_binary(text, path)
    return text, encoding, meta


def _decode(data: bytes, path: Path, declared: str | None) -> tuple[str, str, dict[str, str]]:
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data.decode("utf-8-sig"), "utf-8-sig", {}
        except UnicodeDecodeError as err:
            raise ParseError("invalid UTF-8 after a UTF-8 byte-order mark", path=path) from err
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec), codec, {}
            except UnicodeDecodeError as err:
                raise ParseError(f"invalid {codec} after its byte-order mark", path=path) from err
    if b"\x00" in data:
        reject_if_binary("\x00", path)
    try:
        return data.decode("utf-8"), "utf-8", {}
    except UnicodeDecodeError:
        pass
    candidates = [declared] if declared else []
    candidates.append("cp949")
    for codec in candidates:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if codec != "cp949" or _looks_korean(text):
            return text, codecs.lookup(codec).name, {}
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd")
    if replaced <= _MAX_REPLACED_RATIO * len(text):
        return text, "utf-8", {"decode_errors": f"{replaced} invalid byte(s) replaced with U+FFFD"}
    guess = _charset_normalizer_guess(data)
    if guess is not None:
        return guess
    raise ParseError("cannot detect the text encoding (not UTF-8, UTF-16, or cp949/EUC-KR)", path=path)


def _looks_korean(text: str) -> bool:
    non_ascii = len(_NON_ASCII.findall(text))
    return non_ascii == 0 or len(_HANGUL.findall(text)) >= 0.5 * non_ascii


def _charset_normalizer_guess(data: bytes) -> tuple[str, str, dict[str, str]] | None:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        return None
    try:
        text = data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    return text, best.encoding, {"encoding_guessed": "charset-normalizer"}


def load_text(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.txt`` file: decoded text, no structure."""
    text, encoding, meta = decode_bytes(data, path)
    return LoadedDocument(text=text, mime="text/plain", encoding=encoding, metadata=meta)


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_ATX_CLOSE = re.compile(r"(?:^|[ \t])#+$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def load_markdown(data: bytes, path: Path) -> LoadedDocument:
    """Load a ``.md`` file: the raw Markdown text, with ATX (``#``) and setext headings as sections.

    Headings inside fenced code blocks are ignored. The first level-1 heading is the title.
    """
    text, encoding, meta = decode_bytes(data, path)
    headings: list[tuple[int, int, str]] = []
    fence: str | None = None
    offset = 0
    # A setext heading is a one-line paragraph (after a blank line or a heading) underlined
    # by === or ---; longer paragraphs are left alone rather than guessed at.
    prev: tuple[int, str] | None = None
    after_break = True
    for line in text.split("\n"):
        m = _FENCE.match(line)
        candidate: tuple[int, str] | None = None
        is_heading = False
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
        elif m:
            fence = m.group(1)
        elif (a := _ATX.match(line)) is not None:
            heading = line[a.end() :].strip()
            if (c := _ATX_CLOSE.search(heading[-64:])) is not None:  # optional closing "###"
                heading = heading[: len(heading) - (len(heading[-64:]) - c.start())].strip()
            headings.append((offset, len(a.group(1)), heading))
            is_heading = True
        elif prev is not None and (s := _SETEXT.match(line)) is not None:
            headings.append((prev[0], 1 if s.group(1)[0] == "=" else 2, prev[1].strip()))
            is_heading = True
        elif after_break and line.strip() and not line.startswith(("    ", "\t", ">", "- ", "* ", "+ ", "|")):
            candidate = (offset, line)
        after_break = fence is None and (is_heading or not line.strip())
        prev = candidate
        offset += len(line) + 1
    headings = [h for h in headings if h[2]]
    title = next((t for _, level, t in headings if level == 1), None)
    return LoadedDocument(
        text=text,
        sections=sections_from_headings(len(text), headings),
        title=title,
        mime="text/markdown",
        encoding=encoding,
        metadata=meta,
    )
