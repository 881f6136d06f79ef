"""ingest_loaders: LangChain document loaders for file types saem has no loader of its own for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from saem import Saem
from saem.errors import ConfigError, FileRejected, ParseError
from saem.ingest.loaders import load_file
from saem.ingest.loaders.langchain import import_loader, langchain_loader, loaders_from_settings
from saem.ingest.pipeline import ingest
from saem.settings import Settings
from saem.testing import HashEmbeddings

PYTHON_LOADER = "langchain_community.document_loaders:PythonLoader"


class PagedLoader(BaseLoader):
    """Two pages, as a PDF loader gives them (0-based ``page``), the first with CRLF and decomposed jamo."""

    def __init__(self, file_path: str) -> None:
        self.file_path = file_path

    def lazy_load(self) -> Iterator[Document]:
        yield Document("첫 쪽\r\n내용", metadata={"page": 0, "title": "Report"})
        yield Document("   ", metadata={"page": 1})  # blank pages are dropped
        yield Document("second page", metadata={"page_number": 3})


class BrokenLoader(BaseLoader):
    def __init__(self, file_path: str) -> None:
        self.file_path = file_path

    def lazy_load(self) -> Iterator[Document]:
        raise RuntimeError("boom")
        yield Document("")  # pragma: no cover - makes this a generator


class EmptyLoader(BrokenLoader):
    def lazy_load(self) -> Iterator[Document]:
        yield Document("  \n ")


def _file(tmp_path: Path, name: str = "doc.xyz", body: str = "x") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.unit
def test_documents_become_sections_with_pages_and_clean_text(tmp_path: Path) -> None:
    path = _file(tmp_path)
    doc = load_file(path, max_bytes=1000, extra={".xyz": langchain_loader(PagedLoader)})
    assert doc.text == "첫 쪽\n내용\n\nsecond page"
    assert [(doc.text[s.start : s.end], s.page, s.heading_path) for s in doc.sections] == [
        ("첫 쪽\n내용", 1, ("Report",)),
        ("second page", 3, ()),
    ]
    assert doc.title == "Report" and doc.metadata["loader"] == "PagedLoader"


@pytest.mark.unit
def test_a_failing_or_empty_loader_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    path = _file(tmp_path)
    with pytest.raises(ParseError, match="BrokenLoader could not read it: RuntimeError: boom"):
        load_file(path, max_bytes=1000, extra={".xyz": langchain_loader(BrokenLoader)})
    with pytest.raises(FileRejected, match="empty"):
        load_file(path, max_bytes=1000, extra={".xyz": langchain_loader(EmptyLoader)})
    # saem's own checks run before the third-party loader sees the file
    big = _file(tmp_path, "big.xyz", "y" * 2000)
    with pytest.raises(FileRejected, match="too big"):
        load_file(big, max_bytes=1000, extra={".xyz": langchain_loader(BrokenLoader)})


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("langchain_community.document_loaders.PythonLoader", "not a 'module:Class'"),
        ("os:system; rm -rf /", "not a 'module:Class'"),
        ("saem_no_such_package:Loader", "cannot import"),
        ("os.path:join", "not a LangChain BaseLoader class"),
        ("saem.testing:HashEmbeddings", "not a LangChain BaseLoader class"),
    ],
)
def test_a_loader_spec_that_cannot_be_used_is_a_config_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        import_loader(spec)
    assert info.value.hint


@pytest.mark.unit
def test_the_setting_takes_suffixes_from_toml_and_the_environment(tmp_path: Path) -> None:
    toml = tmp_path / "saem.toml"
    toml.write_text(f'[ingest_loaders]\n".PY" = "{PYTHON_LOADER}"\n', encoding="utf-8")
    assert Settings.load({"data_dir": tmp_path}, config_file=toml, environ={}).ingest_loaders == {".py": PYTHON_LOADER}
    env = {"SAEM_INGEST_LOADERS": f".py={PYTHON_LOADER}, .ipynb=a.b:C"}
    assert Settings.load({"data_dir": tmp_path}, environ=env).ingest_loaders == {
        ".py": PYTHON_LOADER,
        ".ipynb": "a.b:C",
    }
    with pytest.raises(ConfigError, match="not a file suffix"):
        Settings.load({"data_dir": tmp_path, "ingest_loaders": {"py": PYTHON_LOADER}}, environ={})


@pytest.mark.unit
def test_ingest_takes_the_configured_suffixes_and_reports_others(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    _file(docs, "tool.py", 'def top_p():\n    """Nucleus sampling keeps the smallest set of tokens."""\n')
    _file(docs, "notes.rst", "not configured")
    settings = Settings.load({"data_dir": tmp_path / "d", "ingest_loaders": {".py": PYTHON_LOADER}}, environ={})
    report = ingest(settings, [docs], embedder=HashEmbeddings(32))
    by_name = {Path(r.path).name: r for r in report.files}
    assert by_name["tool.py"].status == "added"
    assert (by_name["notes.rst"].status, by_name["notes.rst"].reason) == ("skipped", "unsupported file type .rst")
    assert report.added == 1
    # without the setting, .py is just another unsupported type
    again = ingest(settings.with_overrides(ingest_loaders={}), [docs / "tool.py"], embedder=HashEmbeddings(32))
    assert [(r.status, r.reason) for r in again.files] == [("skipped", "unsupported file type .py")]


@pytest.mark.integration
def test_a_real_community_loader_feeds_retrieval_with_the_packaged_embedder(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    _file(
        docs,
        "sampling.py",
        'def nucleus(probs, top_p):\n    """Keep the smallest set of tokens whose probability mass reaches top_p."""\n',
    )
    _file(docs, "other.md", "# Gardening\n\nTomatoes need sun and water every day.\n")
    app = Saem(data_dir=tmp_path / "data", ingest_loaders={".py": PYTHON_LOADER})
    report = app.ingest(docs)
    assert report.added == 2 and report.failed == 0
    hits = app.search("which function keeps the smallest set of tokens by probability mass?", k=1).hits
    assert hits and Path(hits[0].source).name == "sampling.py"
    assert loaders_from_settings({}) == {}
