"""Loaders: every format, every encoding path, and every kind of bad input → a clear error."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from saem.errors import FileRejected, ParseError
from saem.ingest.loaders import SUPPORTED_SUFFIXES, load_file
from saem.ingest.types import LoadedDocument

pytestmark = pytest.mark.unit

MB = 1024 * 1024
LIMIT = 20 * MB
KO = "한국어 문서입니다. 인코딩을 시험합니다."


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def load(tmp_path: Path, name: str, data: bytes | str, *, max_bytes: int = LIMIT) -> LoadedDocument:
    return load_file(write(tmp_path, name, data), max_bytes=max_bytes)


def section_texts(doc: LoadedDocument) -> list[tuple[tuple[str, ...], str]]:
    return [(s.heading_path, doc.text[s.start : s.end]) for s in doc.sections]


# -- builders for zip-of-XML and PDF fixtures --------------------------------------------------

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
STYLES = f"""<?xml version="1.0" encoding="UTF-8"?>
<w:styles xmlns:w="{W_NS}">
  <w:style w:type="paragraph" w:styleId="Title"><w:name w:val="Title"/></w:style>
  <w:style w:type="paragraph" w:styleId="1"><w:name w:val="heading 1"/></w:style>
  <w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/>
    <w:pPr><w:outlineLvl w:val="1"/></w:pPr></w:style>
</w:styles>"""


def w_para(text: str, style: str | None = None) -> str:
    ppr = (
        f'<w:pPr><w:pStyle w:val="{style}"/><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>' if style else ""
    )
    return f'<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>'


def make_zip(members: dict[str, bytes | str], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


def make_docx(body: str, *, styles: str = STYLES, extra: dict[str, bytes | str] | None = None) -> bytes:
    document = (
        f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{W_NS}"><w:body>{body}</w:body></w:document>'
    )
    return make_zip(
        {"[Content_Types].xml": "<Types/>", "word/document.xml": document, "word/styles.xml": styles, **(extra or {})}
    )


HP = "http://www.hancom.co.kr/hwpml/2011/paragraph"
HS = "http://www.hancom.co.kr/hwpml/2011/section"
HH = "http://www.hancom.co.kr/hwpml/2011/head"
HWPX_HEADER = f"""<?xml version="1.0" encoding="UTF-8"?>
<hh:head xmlns:hh="{HH}"><hh:refList><hh:styles>
  <hh:style id="0" type="PARA" name="바탕글" engName="Normal" paraPrIDRef="0"/>
  <hh:style id="2" type="PARA" name="개요 1" engName="Outline 1" paraPrIDRef="1"/>
  <hh:style id="3" type="PARA" name="개요 2" engName="Outline 2" paraPrIDRef="2"/>
</hh:styles></hh:refList></hh:head>"""


def h_para(text: str, style: int = 0) -> str:
    return f'<hp:p paraPrIDRef="0" styleIDRef="{style}"><hp:run charPrIDRef="0"><hp:t>{text}</hp:t></hp:run></hp:p>'


def make_hwpx(*sections: str, header: str = HWPX_HEADER) -> bytes:
    members: dict[str, bytes | str] = {"mimetype": "application/hwp+zip", "Contents/header.xml": header}
    for i, body in enumerate(sections):
        members[f"Contents/section{i}.xml"] = f'<hs:sec xmlns:hs="{HS}" xmlns:hp="{HP}">{body}</hs:sec>'
    return make_zip(members)


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one Helvetica text line per input line (Latin-1 text only)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, page in enumerate(pages):
        ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({esc(line)}) Tj T*" for line in page.split("\n")) + " ET"
        stream = ops.encode("latin-1") if page else b""
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for k, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{k} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


# -- plain text and encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (KO.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + KO.encode("utf-8"), "utf-8-sig"),
        (b"\xff\xfe" + KO.encode("utf-16-le"), "utf-16-le"),
        (b"\xfe\xff" + KO.encode("utf-16-be"), "utf-16-be"),
        (KO.encode("cp949"), "cp949"),
        (KO.encode("euc-kr"), "cp949"),
        ("똠방각하 펲시콜라 (cp949-only syllables)".encode("cp949"), "cp949"),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "cp949", "euc-kr", "cp949-extended"],
)
def test_text_encodings_are_detected(tmp_path: Path, data: bytes, encoding: str) -> None:
    doc = load(tmp_path, "a.txt", data)
    assert doc.encoding == encoding
    assert doc.text in (KO, "똠방각하 펲시콜라 (cp949-only syllables)")
    assert not doc.text.startswith("\ufeff")


def test_crlf_and_cr_become_lf_and_text_is_nfc(tmp_path: Path) -> None:
    decomposed = "한글".encode().decode("utf-8")
    import unicodedata

    nfd = unicodedata.normalize("NFD", decomposed)
    doc = load(tmp_path, "a.txt", f"one\r\ntwo\rthree\n{nfd}")
    assert doc.text == "one\ntwo\nthree\n한글"
    assert doc.mime == "text/plain"


def test_a_few_invalid_utf8_bytes_are_replaced_and_reported(tmp_path: Path) -> None:
    data = ("가나다라 " * 2000).encode("utf-8") + b"\xff" + "끝.".encode()
    doc = load(tmp_path, "a.txt", data)
    assert doc.encoding == "utf-8"
    assert doc.text.endswith("\ufffd끝.")
    assert doc.metadata["decode_errors"].startswith("1 invalid byte")


def test_undecodable_bytes_raise_parse_error(tmp_path: Path) -> None:
    import random

    rng = random.Random(0)
    data = bytes(rng.randrange(0x80, 0x100) for _ in range(4000))
    with pytest.raises(ParseError, match="encoding") as info:
        load(tmp_path, "noise.txt", data)
    assert info.value.path == tmp_path / "noise.txt"


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04\x00\x00binary\x00\x01\x02" * 50, bytes(range(1, 9)) * 200 + b"text"],
    ids=["nul-bytes", "control-chars"],
)
def test_binary_behind_text_extension_is_rejected(tmp_path: Path, data: bytes) -> None:
    for name in ("bin.txt", "bin.md", "bin.csv", "bin.json", "bin.html"):
        with pytest.raises(FileRejected, match="binary"):
            load(tmp_path, name, data)


@pytest.mark.parametrize("name", ["e.txt", "e.md", "e.json", "e.pdf", "e.docx", "e.hwpx", "e.csv"])
def test_empty_file_is_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(FileRejected, match="empty"):
        load(tmp_path, name, b"")


@pytest.mark.parametrize("data", [b"   \n\t \r\n  ", "\u3000\n".encode(), b"\xff\xfe" + " \n".encode("utf-16-le")])
def test_whitespace_only_file_is_rejected(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(FileRejected, match="empty"):
        load(tmp_path, "w.txt", data)


def test_file_over_max_bytes_is_rejected_from_stat_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as fh:
        fh.truncate(50 * 1024**3)  # sparse: reading it would take minutes
    with pytest.raises(FileRejected, match="too big"):
        load_file(path, max_bytes=LIMIT)
    small = write(tmp_path, "s.txt", "12345678901")
    with pytest.raises(FileRejected, match="too big"):
        load_file(small, max_bytes=10)
    assert load_file(small, max_bytes=11).text == "12345678901"


@pytest.mark.timeout(10)
def test_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(FileRejected, match="FIFO"):
        load_file(fifo, max_bytes=LIMIT)


def test_directory_device_and_missing_file_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(FileRejected, match="directory"):
        load_file(tmp_path / "dir.txt", max_bytes=LIMIT)
    with pytest.raises(FileRejected, match="device"):
        load_file(Path("/dev/null"), max_bytes=LIMIT)
    with pytest.raises(FileRejected, match="not found"):
        load_file(tmp_path / "nope.txt", max_bytes=LIMIT)


def test_unsupported_extensions_are_rejected_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="unsupported") as info:
        load(tmp_path, "old.hwp", b"\xd0\xcf\x11\xe0")
    assert info.value.hint is not None and ".hwpx" in info.value.hint
    with pytest.raises(FileRejected, match="unsupported"):
        load(tmp_path, "noext", b"hello")
    assert ".hwp" not in SUPPORTED_SUFFIXES
    assert {".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".csv", ".json", ".jsonl", ".hwpx"} <= SUPPORTED_SUFFIXES


@pytest.mark.parametrize("name", ["with space.TXT", "한글 파일명.txt", "new\nline.txt", "-dash.txt", "x.tar.txt"])
def test_odd_file_names_load_and_keep_their_path(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "내용이 있습니다.")
    assert load_file(path, max_bytes=LIMIT).text == "내용이 있습니다."
    bad = write(tmp_path, "bin " + name, b"\x00\x01")
    with pytest.raises(FileRejected) as info:
        load_file(bad, max_bytes=LIMIT)
    assert info.value.path == bad
    assert "\n" not in info.value.message


def test_five_megabyte_line_without_spaces_loads(tmp_path: Path) -> None:
    doc = load(tmp_path, "line.md", "# " + "가" * (5 * MB // 3))
    assert len(doc.text) == 2 + 5 * MB // 3
    assert len(doc.sections) == 1


# -- markdown ----------------------------------------------------------------------------------


def test_markdown_headings_become_sections(tmp_path: Path) -> None:
    md = (
        "intro line\n\n# 설치 안내 #\n\n본문.\n\n## Linux\n\n```sh\n# not a heading\n```\n\n"
        "## Windows\n\nwin\n\nSetext\n------\n\nend\n"
    )
    doc = load(tmp_path, "guide.md", md)
    assert doc.title == "설치 안내"
    assert [p for p, _ in section_texts(doc)] == [
        (),
        ("설치 안내",),
        ("설치 안내", "Linux"),
        ("설치 안내", "Windows"),
        ("설치 안내", "Setext"),
    ]
    texts = dict(section_texts(doc))
    assert "# not a heading" in texts[("설치 안내", "Linux")]
    assert texts[("설치 안내", "Setext")].startswith("Setext\n---")
    assert doc.mime == "text/markdown"


# -- html --------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>김프 도움말</title>
<style>p {color: red}</style><script>var x = "<p>script text</p>";</script></head>
<body><header>사이트 머리말</header><nav><a href="/">홈</a></nav>
<div class="sphinxsidebar" role="navigation">사이드바</div>
<main><h1>레이어<a class="headerlink" href="#l">¶</a></h1>
<p>레이어는   <b>투명한</b> 종이와
같습니다 &amp; 쌓입니다.</p>
<h2>새 레이어</h2><ul><li>하나</li><li>둘</li></ul>
<pre>code   kept
  indented</pre>
<h3>Deep</h3><table><tr><td>a</td><td>b</td></tr></table>
<h2>Second</h2><p>last</p><form><input value="x">form text</form></main>
<aside>aside text</aside><noscript>noscript text</noscript><footer>copyright</footer></body></html>"""


def test_html_keeps_content_and_headings_and_drops_chrome(tmp_path: Path) -> None:
    doc = load(tmp_path, "page.html", HTML)
    assert doc.title == "김프 도움말"
    for gone in (
        "사이트 머리말",
        "홈",
        "사이드바",
        "script text",
        "color",
        "form text",
        "aside text",
        "noscript",
        "copyright",
        "¶",
    ):
        assert gone not in doc.text
    assert "레이어는 투명한 종이와 같습니다 & 쌓입니다." in doc.text
    assert "code   kept\n  indented" in doc.text
    assert [p for p, _ in section_texts(doc)] == [
        ("레이어",),
        ("레이어", "새 레이어"),
        ("레이어", "새 레이어", "Deep"),
        ("레이어", "Second"),
    ]
    assert section_texts(doc)[1][1].startswith("새 레이어\n\n하나\n둘")
    assert doc.mime == "text/html"


def test_html_header_inside_article_is_kept_and_legacy_charset_is_honoured(tmp_path: Path) -> None:
    html = (
        '<html><head><meta charset="euc-kr"></head><body><article><header><h1>기사 제목</h1></header>'
        "<p>본문입니다.</p></article></body></html>"
    )
    doc = load(tmp_path, "a.htm", html.encode("euc-kr"))
    assert doc.text == "기사 제목\n\n본문입니다."
    assert doc.title == "기사 제목"


def test_deeply_nested_html_loads_or_is_refused_without_stalling(tmp_path: Path) -> None:
    doc = load(tmp_path, "deep.html", "<div><span>" * 1_500 + "깊은 곳" + "</span></div>" * 1_500)
    assert doc.text == "깊은 곳"
    with pytest.raises(ParseError, match="nested deeper"):
        load(tmp_path, "deeper.html", "<div>" * 50_000 + "깊은 곳" + "</div>" * 50_000)
    many_paragraphs = "<body>" + "<p>문단입니다." * 20_000 + "</body>"  # unclosed <p>s do not nest
    assert load(tmp_path, "p.html", many_paragraphs).text.count("문단입니다.") == 20_000
    # stray end tags before the tower do not buy depth: it is counted from zero
    stray = "</div>" * 10_000 + "<div>" * 5_000 + "깊은 곳"
    with pytest.raises(ParseError, match="nested deeper"):
        load(tmp_path, "stray.html", stray)


def test_chrome_roles_match_case_blind_and_classes_as_whole_class_names(tmp_path: Path) -> None:
    html = (
        "<!DOCTYPE html><body><div role='Navigation'>역할 메뉴</div><div class='x sphinxsidebar'>옆줄</div>"
        "<div class='sphinxsidebarwide'>남는 글</div><div class='SphinxSidebar'>대문자 클래스</div>"
        "<p>본문입니다.</p></body>"
    )
    text = load(tmp_path, "chrome.html", html).text
    assert "역할 메뉴" not in text and "옆줄" not in text
    assert "남는 글" in text and "대문자 클래스" in text and "본문입니다." in text


def test_html_link_lists_are_navigation_but_content_lists_and_a_few_links_stay(tmp_path: Path) -> None:
    toc = "".join(f'<li><a href="s{i}.html">{i}. 절 제목 {i}</a></li>' for i in range(6))
    index = "".join(f'<dt><a href="p{i}.html">항목 {i}</a>, <a href="q{i}.html">{i}</a></dt>' for i in range(8))
    html = (
        f"<html><body><h1>레이어</h1><div class='toc'><ul>{toc}</ul></div>"
        "<p>레이어는 투명한 종이와 같습니다.</p>"
        "<ul><li>첫째, <a href='a.html'>레이어 대화상자</a>를 엽니다.</li><li>둘째, 새 레이어를 만듭니다.</li>"
        "<li>셋째, 모드를 고릅니다.</li><li>넷째, <a href='b.html'>저장</a>합니다.</li></ul>"
        f"<dl>{index}</dl>"
        "<p>See <a href='x.html'>one</a> and <a href='y.html'>two</a>.</p>"
        "<div class='footer'>© Copyright 2001, the authors.</div></body></html>"
    )
    doc = load(tmp_path, "page.html", html)
    assert "절 제목" not in doc.text and "항목" not in doc.text  # a table of contents and an index
    assert "첫째, 레이어 대화상자를 엽니다." in doc.text and "넷째, 저장합니다." in doc.text  # mostly prose
    assert "See one and two." in doc.text  # links inside a paragraph are text
    assert "Copyright" not in doc.text


def test_an_index_page_made_only_of_link_lists_is_empty(tmp_path: Path) -> None:
    links = "".join(f'<li><a href="m{i}.html">module{i}</a></li>' for i in range(30))
    with pytest.raises(FileRejected, match="empty"):
        load(tmp_path, "genindex.html", f"<html><body><table><tr><td><ul>{links}</ul></td></tr></table></body></html>")


def test_html_with_only_chrome_is_empty(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="empty"):
        load(tmp_path, "nav.html", "<html><body><nav>menu</nav><script>x()</script></body></html>")


# -- pdf ---------------------------------------------------------------------------------------


def test_pdf_pages_become_sections_with_page_numbers(tmp_path: Path) -> None:
    doc = load(tmp_path, "a.pdf", make_pdf(["First page text.\nSecond line.", "Page two (parens)."]))
    assert [s.page for s in doc.sections] == [1, 2]
    assert [doc.text[s.start : s.end] for s in doc.sections] == ["First page text.\nSecond line.", "Page two (parens)."]
    assert doc.mime == "application/pdf"
    assert doc.metadata["pages"] == "2"


def test_pdf_outline_gives_heading_paths(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Intro.", "Install.", "Linux steps.", "Appendix."]))))
    chapter = writer.add_outline_item(title="Install", page_number=1)
    writer.add_outline_item(title="Linux", page_number=2, parent=chapter)
    writer.add_outline_item(title="Appendix", page_number=3)
    buf = io.BytesIO()
    writer.write(buf)
    doc = load(tmp_path, "outline.pdf", buf.getvalue())
    assert [(s.page, s.heading_path) for s in doc.sections] == [
        (1, ()),
        (2, ("Install",)),
        (3, ("Install", "Linux")),
        (4, ("Appendix",)),
    ]


def test_pdf_without_text_layer_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="no text layer"):
        load(tmp_path, "scan.pdf", make_pdf(["", ""]))


@pytest.mark.parametrize("data", [b"%PDF-1.4\n garbage garbage", b"not a pdf at all", make_pdf(["x"])[:60]])
def test_corrupt_pdf_is_a_parse_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ParseError):
        load(tmp_path, "bad.pdf", data)


# -- docx --------------------------------------------------------------------------------------


def test_docx_paragraphs_tables_and_heading_styles(tmp_path: Path) -> None:
    body = (
        w_para("문서 제목", "Title")
        + w_para("개요", "1")
        + w_para("첫 문단입니다.")
        + "<w:p><w:r><w:t>탭</w:t><w:tab/><w:t>다음</w:t><w:br/><w:t>줄</w:t></w:r>"
        + "<w:r><w:delText>지운 글</w:delText></w:r></w:p>"
        + w_para("세부", "Heading2")
        + "<w:tbl><w:tr><w:tc>"
        + w_para("셀 A")
        + "</w:tc><w:tc>"
        + w_para("셀 B")
        + "</w:tc></w:tr></w:tbl>"
        + '<w:p><w:pPr><w:outlineLvl w:val="0"/></w:pPr><w:r><w:t>Direct outline</w:t></w:r></w:p>'
        + w_para("끝.")
    )
    doc = load(tmp_path, "보고서.docx", make_docx(body))
    assert doc.title == "문서 제목"
    assert "탭\t다음\n줄" in doc.text
    assert "지운 글" not in doc.text
    assert [(p, t.split("\n")[0]) for p, t in section_texts(doc)] == [
        ((), "문서 제목"),
        (("개요",), "개요"),
        (("개요", "세부"), "세부"),
        (("Direct outline",), "Direct outline"),
    ]
    assert "셀 A\n셀 B" in doc.text


def test_docx_core_title_wins(tmp_path: Path) -> None:
    core = (
        '<cp:coreProperties xmlns:cp="x" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:title>Core Title</dc:title></cp:coreProperties>"
    )
    doc = load(tmp_path, "a.docx", make_docx(w_para("Body."), extra={"docProps/core.xml": core}))
    assert doc.title == "Core Title"
    assert doc.text == "Body."


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
)


@pytest.mark.parametrize("kind", ["billion-laughs", "external-entity"])
def test_docx_xml_entities_are_refused(tmp_path: Path, kind: str) -> None:
    if kind == "billion-laughs":
        xml = (
            BILLION_LAUGHS
            + f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol3;</w:t></w:r></w:p></w:body></w:document>'
        )
    else:
        xml = (
            '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>'
        )
    data = make_zip({"word/document.xml": xml})
    with pytest.raises(ParseError, match="forbidden XML"):
        load(tmp_path, "evil.docx", data)


def test_zip_bomb_docx_is_rejected_by_compression_ratio(tmp_path: Path) -> None:
    data = make_docx(w_para("x"), extra={"word/media/bomb.bin": b"\x00" * (4 * MB)})
    assert len(data) < 64 * 1024
    with pytest.raises(FileRejected, match="compression ratio"):
        load(tmp_path, "bomb.docx", data)


def test_archive_with_too_many_members_is_rejected(tmp_path: Path) -> None:
    members: dict[str, bytes | str] = {f"junk/{i}.xml": b"" for i in range(5_001)}
    data = make_docx(w_para("x"), extra=members)
    with pytest.raises(FileRejected, match="members"):
        load(tmp_path, "many.docx", data)


def test_archive_expanding_past_the_total_limit_is_rejected(tmp_path: Path) -> None:
    from saem.ingest.loaders._archive import ArchiveLimits, SafeZip

    stored = make_zip({"a": b"x" * 2000, "b": b"y" * 2000}, compression=zipfile.ZIP_STORED)
    with pytest.raises(FileRejected, match="size limit"):
        SafeZip(stored, tmp_path / "t.docx", ".docx", ArchiveLimits(max_total_bytes=3000))
    # Declared sizes within limits, but reading past the running total budget is refused too.
    archive = SafeZip(stored, tmp_path / "t.docx", ".docx", ArchiveLimits(max_total_bytes=4000))
    assert archive.read("a") == b"x" * 2000
    archive.limits = ArchiveLimits(max_total_bytes=3000)
    with pytest.raises(FileRejected, match="expands beyond"):
        archive.read("b")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"PK\x03\x04 definitely not a zip", "not a valid"),
        (make_zip({"hello.txt": "no document here"}), "no word/document.xml"),
        (make_zip({"word/document.xml": "<w:document><unclosed>"}), "malformed XML"),
    ],
    ids=["not-zip", "no-document", "bad-xml"],
)
def test_broken_docx_is_a_parse_error(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        load(tmp_path, "broken.docx", data)


# -- hwpx --------------------------------------------------------------------------------------


def test_hwpx_sections_outline_headings_and_tables(tmp_path: Path) -> None:
    sec0 = (
        h_para("머리 문단")
        + h_para("1. 개요", 2)
        + '<hp:p styleIDRef="0"><hp:run><hp:t>탭<hp:tab/>뒤<hp:lineBreak/>다음 줄</hp:t></hp:run></hp:p>'
        + h_para("1.1 배경", 3)
        + '<hp:p styleIDRef="0"><hp:run><hp:tbl><hp:tr><hp:tc><hp:subList>'
        + h_para("표 셀")
        + "</hp:subList></hp:tc></hp:tr></hp:tbl></hp:run></hp:p>"
    )
    sec1 = h_para("2. 결론", 2) + h_para("끝입니다.")
    doc = load(tmp_path, "보고서 최종.hwpx", make_hwpx(sec0, sec1))
    assert "탭\t뒤\n다음 줄" in doc.text
    assert "표 셀" in doc.text
    assert [p for p, _ in section_texts(doc)] == [(), ("1. 개요",), ("1. 개요", "1.1 배경"), ("2. 결론",)]
    assert section_texts(doc)[-1][1] == "2. 결론\n\n끝입니다."
    assert doc.mime == "application/hwp+zip"


def test_hwpx_sections_are_read_in_numeric_order(tmp_path: Path) -> None:
    bodies = [h_para(f"섹션 {i}.") for i in range(12)]
    doc = load(tmp_path, "many.hwpx", make_hwpx(*bodies))
    assert [line for line in doc.text.split("\n") if line] == [f"섹션 {i}." for i in range(12)]


def test_hwpx_billion_laughs_and_bomb_are_refused(tmp_path: Path) -> None:
    evil = make_zip({"Contents/section0.xml": BILLION_LAUGHS + f'<hs:sec xmlns:hs="{HS}">&lol3;</hs:sec>'})
    with pytest.raises(ParseError, match="forbidden XML"):
        load(tmp_path, "evil.hwpx", evil)
    bomb = make_zip({"Contents/section0.xml": "<a/>", "BinData/x.bin": b"\x00" * (4 * MB)})
    with pytest.raises(FileRejected, match="zip bomb"):
        load(tmp_path, "bomb.hwpx", bomb)
    with pytest.raises(ParseError, match="no Contents/section"):
        load(tmp_path, "nosec.hwpx", make_zip({"mimetype": "application/hwp+zip"}))


# -- csv / json / jsonl ------------------------------------------------------------------------


def test_csv_rows_carry_their_column_names(tmp_path: Path) -> None:
    data = "이름;나이;도시\r\n김민수;31;서울\r\n이영희;;부산\r\n".encode("cp949")
    doc = load(tmp_path, "people.csv", data)
    assert doc.text == "이름: 김민수 | 나이: 31 | 도시: 서울\n이름: 이영희 | 도시: 부산"
    assert doc.encoding == "cp949"
    assert doc.metadata["rows"] == "2"


def test_csv_with_quoted_newlines(tmp_path: Path) -> None:
    doc = load(tmp_path, "q.csv", 'id,note\n1,"two\nlines"\n')
    assert doc.text == "id: 1 | note: two lines"


def test_json_is_rendered_as_paths(tmp_path: Path) -> None:
    value = {"제품": {"이름": "샘", "버전": 0.9, "태그": ["rag", "local"]}, "ok": True, "none": None, "empty": ""}
    doc = load(tmp_path, "p.json", json.dumps(value, ensure_ascii=False))
    assert doc.text.split("\n") == [
        "제품.이름: 샘",
        "제품.버전: 0.9",
        "제품.태그[0]: rag",
        "제품.태그[1]: local",
        "ok: true",
        "none: null",
    ]


def test_deeply_nested_json_is_a_parse_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        load(tmp_path, "deep.json", "[" * 200_000 + "]" * 200_000)
    doc = load(tmp_path, "ok.json", '{"a":' * 500 + '"바닥"' + "}" * 500)
    assert doc.text.endswith(".a.a: 바닥")
    assert doc.text.startswith("….a")


def test_jsonl_records_and_line_numbers_in_errors(tmp_path: Path) -> None:
    doc = load(tmp_path, "r.jsonl", '{"q": "질문?", "a": "답."}\n\n{"q": "two"}\n')
    assert doc.text == "q: 질문?\na: 답.\n\nq: two"
    assert doc.metadata["records"] == "2"
    with pytest.raises(ParseError, match="line 2"):
        load(tmp_path, "bad.jsonl", '{"ok": 1}\n{"broken": \n')


def test_invalid_json_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="invalid JSON"):
        load(tmp_path, "bad.json", "{'single': quotes}")
