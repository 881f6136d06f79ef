"""The project's own sample corpus (data/) and its QA set (data/qa.jsonl).

The QA format follows shared/eval/README.md: fields id, question, answers, evidence,
source, sources (multi only), lang, kind; evidence spans are verbatim substrings
(15-250 characters, compared after collapsing whitespace) of the source document's
visible text.

The checks live in small helper functions that return a list of problems. The tests
assert that the real data has no problems, and a second group of tests feeds the
helpers deliberately broken copies to show that every check can fail.
"""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "data"
QA_PATH = DATA / "qa.jsonl"

DOC_SUFFIXES = {".md", ".txt", ".html"}
REQUIRED = ("id", "question", "answers", "evidence", "source", "lang", "kind")
LANGS = {"ko", "en"}
KINDS = {"factual", "crosslingual", "multi", "unanswerable"}
MIN_ITEMS = 30
SPAN_MIN, SPAN_MAX = 15, 250
ID_RE = re.compile(r"^s-\d{3}$")
HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
LATIN_RE = re.compile(r"[A-Za-z]")


# --------------------------------------------------------------------------- helpers


def norm(text: str) -> str:
    """README normalisation: every whitespace run becomes one space, ends trimmed."""
    return re.sub(r"\s+", " ", text).strip()


class _VisibleText(HTMLParser):
    """Collects the text nodes of an HTML page, skipping <script> and <style>."""

    SKIP = {"script", "style"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.nodes.append(data)


def text_units(path: Path) -> list[str]:
    """The pieces of visible text an evidence span may not cross.

    HTML: one piece per text node (spans must not cross tags). Plain text and
    Markdown: one piece per line (spans must not cross line breaks; CRLF and LF both
    count as a break).
    """
    raw = path.read_bytes().decode("utf-8")
    if path.suffix == ".html":
        parser = _VisibleText()
        parser.feed(raw)
        parser.close()
        pieces = parser.nodes
    else:
        pieces = re.split(r"\r\n|\r|\n", raw)
    return [n for n in (norm(p) for p in pieces) if n]


def visible_text(path: Path) -> str:
    return norm(" ".join(text_units(path)))


def is_korean(text: str) -> bool:
    """A document is Korean when Hangul makes up most of its letters."""
    hangul = len(HANGUL_RE.findall(text))
    latin = len(LATIN_RE.findall(text))
    return hangul > 0 and hangul >= latin


def corpus_docs(data_dir: Path = DATA) -> list[Path]:
    return sorted(p for p in data_dir.iterdir() if p.is_file() and p.suffix in DOC_SUFFIXES)


def load_lines(path: Path = QA_PATH) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def parse_problems(lines: list[str]) -> list[str]:
    problems = []
    for no, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {no}: not JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {no}: not a JSON object")
    return problems


def field_problems(item: dict) -> list[str]:
    """Required fields, their types and allowed values."""
    iid = item.get("id", "?")
    problems = [f"{iid}: missing field {f!r}" for f in REQUIRED if f not in item]
    if problems:
        return problems
    extra = set(item) - set(REQUIRED) - {"sources"}
    if extra:
        problems.append(f"{iid}: unknown fields {sorted(extra)}")
    if not isinstance(item["id"], str) or not ID_RE.match(item["id"]):
        problems.append(f"{iid}: id does not look like s-001")
    if not isinstance(item["question"], str) or not item["question"].strip():
        problems.append(f"{iid}: empty question")
    if not isinstance(item["answers"], list) or not all(isinstance(a, str) and a.strip() for a in item["answers"]):
        problems.append(f"{iid}: answers must be a list of non-empty strings")
    if not isinstance(item["evidence"], list) or not all(isinstance(e, str) for e in item["evidence"]):
        problems.append(f"{iid}: evidence must be a list of strings")
    if item["source"] is not None and not isinstance(item["source"], str):
        problems.append(f"{iid}: source must be a file name or null")
    if item["lang"] not in LANGS:
        problems.append(f"{iid}: lang {item['lang']!r} not in {sorted(LANGS)}")
    if item["kind"] not in KINDS:
        problems.append(f"{iid}: kind {item['kind']!r} not in {sorted(KINDS)}")
    if "sources" in item and item["kind"] != "multi":
        problems.append(f"{iid}: only multi items may carry 'sources'")
    q_has_hangul = bool(HANGUL_RE.search(str(item["question"])))
    if item["lang"] == "ko" and not q_has_hangul:
        problems.append(f"{iid}: lang is ko but the question has no Hangul")
    if item["lang"] == "en" and q_has_hangul:
        problems.append(f"{iid}: lang is en but the question contains Hangul")
    return problems


def duplicate_ids(items: list[dict]) -> list[str]:
    seen: set[str] = set()
    dups = []
    for item in items:
        if item["id"] in seen:
            dups.append(item["id"])
        seen.add(item["id"])
    return dups


def kind_problems(item: dict, data_dir: Path = DATA) -> list[str]:
    """Rules that depend on the kind: unanswerable is empty, multi has two sources, etc."""
    iid, kind = item["id"], item["kind"]
    problems = []
    if kind == "unanswerable":
        if item["answers"] or item["evidence"] or item["source"] is not None:
            problems.append(f"{iid}: unanswerable items need empty answers/evidence and source null")
        return problems
    if not item["answers"]:
        problems.append(f"{iid}: answerable item without answers")
    if not item["evidence"]:
        problems.append(f"{iid}: answerable item without evidence")
    if not item["source"]:
        problems.append(f"{iid}: answerable item without source")
        return problems
    for name in [item["source"], *item.get("sources", [])]:
        if not (data_dir / name).is_file():
            problems.append(f"{iid}: source file {name!r} does not exist in data/")
    if problems:
        return problems
    if kind == "multi":
        sources = item.get("sources")
        if not isinstance(sources, list) or len(sources) != 2 or len(set(sources)) != 2:
            problems.append(f"{iid}: multi items need 'sources' with two different files")
        elif sources[0] != item["source"]:
            problems.append(f"{iid}: sources[0] must equal source")
        if len(item["evidence"]) < 2:
            problems.append(f"{iid}: multi items need one evidence span per passage (at least 2)")
    source_korean = is_korean(visible_text(data_dir / item["source"]))
    if kind == "factual" and source_korean != (item["lang"] == "ko"):
        problems.append(f"{iid}: factual items ask in the language of their document")
    if kind == "crosslingual":
        if item["lang"] != "en" or not source_korean:
            problems.append(f"{iid}: crosslingual items are English questions over a Korean document")
        if not any(HANGUL_RE.search(a) for a in item["answers"]):
            problems.append(f"{iid}: crosslingual answers need a Korean wording too")
        if all(HANGUL_RE.search(a) for a in item["answers"]):
            problems.append(f"{iid}: crosslingual answers need an English (non-Hangul) wording too")
    return problems


def evidence_problems(item: dict, data_dir: Path = DATA) -> list[str]:
    """Every span is 15-250 characters and occurs verbatim within one text unit of a source."""
    iid = item["id"]
    problems = []
    if item["kind"] == "unanswerable":
        return problems
    names = item.get("sources") or [item["source"]]
    units = {name: text_units(data_dir / name) for name in names}
    used: set[str] = set()
    for span in item["evidence"]:
        n = norm(span)
        if not SPAN_MIN <= len(n) <= SPAN_MAX:
            problems.append(f"{iid}: evidence span has {len(n)} characters (allowed {SPAN_MIN}-{SPAN_MAX}): {n[:40]!r}")
        hits = [name for name in names if any(n in u for u in units[name])]
        if not hits:
            problems.append(f"{iid}: evidence not found verbatim (within one text node/line) in {names}: {n[:60]!r}")
        used.update(hits)
        if n in norm(item["question"]):
            problems.append(f"{iid}: the question repeats its evidence verbatim")
    if not problems and item["evidence"]:
        if not any(norm(s) in " ".join(units[item["source"]]) for s in item["evidence"][:1]):
            problems.append(f"{iid}: the first evidence span must come from 'source'")
        missing = [name for name in names if name not in used]
        if missing:
            problems.append(f"{iid}: no evidence span comes from {missing}")
    return problems


def corpus_problems(docs: list[Path]) -> list[str]:
    problems = []
    if not 8 <= len(docs) <= 12:
        problems.append(f"corpus has {len(docs)} documents, expected 8-12")
    formats = {d.suffix for d in docs}
    if len(formats) < 3:
        problems.append(f"corpus uses formats {sorted(formats)}, expected at least 3")
    if docs:
        korean = sum(is_korean(visible_text(d)) for d in docs)
        share = korean / len(docs)
        if not 0.4 <= share <= 0.6:
            problems.append(f"{korean}/{len(docs)} documents are Korean ({share:.0%}), expected 40-60%")
    return problems


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def items() -> list[dict]:
    assert QA_PATH.is_file(), f"{QA_PATH} is missing"
    lines = load_lines()
    assert parse_problems(lines) == []
    return [json.loads(ln) for ln in lines]


@pytest.fixture(scope="module")
def docs() -> list[Path]:
    assert DATA.is_dir(), f"{DATA} is missing"
    return corpus_docs()


# --------------------------------------------------------------------------- the real data


@pytest.mark.unit
def test_every_line_parses() -> None:
    lines = load_lines()
    assert lines, "qa.jsonl is empty"
    assert parse_problems(lines) == []


@pytest.mark.unit
def test_required_fields_and_values(items: list[dict]) -> None:
    problems = [p for item in items for p in field_problems(item)]
    assert problems == []


@pytest.mark.unit
def test_ids_are_unique(items: list[dict]) -> None:
    assert duplicate_ids(items) == []


@pytest.mark.unit
def test_enough_items_and_every_kind_present(items: list[dict]) -> None:
    assert len(items) >= MIN_ITEMS
    kinds = {item["kind"] for item in items}
    assert kinds == KINDS, f"kinds present: {sorted(kinds)}"
    assert {item["lang"] for item in items} == LANGS


@pytest.mark.unit
def test_kind_rules_and_sources_exist(items: list[dict]) -> None:
    problems = [p for item in items for p in kind_problems(item)]
    assert problems == []


@pytest.mark.unit
def test_evidence_is_verbatim_in_visible_text(items: list[dict]) -> None:
    problems = [p for item in items for p in evidence_problems(item)]
    assert problems == []


@pytest.mark.unit
def test_corpus_size_formats_and_language_mix(docs: list[Path]) -> None:
    assert corpus_problems(docs) == []


@pytest.mark.unit
def test_every_document_is_targeted_by_some_question(items: list[dict], docs: list[Path]) -> None:
    targeted = {name for item in items for name in (item.get("sources") or [item["source"]]) if name}
    untouched = sorted(d.name for d in docs if d.name not in targeted)
    assert untouched == []


# --------------------------------------------------------------------------- the checks can fail


def _first(items: list[dict], kind: str) -> dict:
    return copy.deepcopy(next(item for item in items if item["kind"] == kind))


@pytest.mark.unit
def test_parse_check_rejects_bad_lines() -> None:
    assert parse_problems(['{"id": "s-001"'])
    assert parse_problems(["[1, 2]"])


@pytest.mark.unit
def test_field_check_rejects_bad_items(items: list[dict]) -> None:
    good = _first(items, "factual")
    assert field_problems(good) == []
    for mutate in (
        lambda d: d.pop("evidence"),
        lambda d: d.update(lang="de"),
        lambda d: d.update(kind="opinion"),
        lambda d: d.update(id="x1"),
        lambda d: d.update(answers="not a list"),
        lambda d: d.update(sources=[d["source"], "en_embeddings.md"]),
        lambda d: d.update(lang="en" if d["lang"] == "ko" else "ko"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert field_problems(bad), bad


@pytest.mark.unit
def test_duplicate_ids_are_found(items: list[dict]) -> None:
    assert duplicate_ids([items[0], copy.deepcopy(items[0])]) == [items[0]["id"]]


@pytest.mark.unit
def test_kind_check_rejects_bad_items(items: list[dict]) -> None:
    unanswerable = _first(items, "unanswerable")
    unanswerable["answers"] = ["something"]
    assert kind_problems(unanswerable)

    missing = _first(items, "factual")
    missing["source"] = "no_such_file.md"
    assert kind_problems(missing)

    multi = _first(items, "multi")
    multi["sources"] = multi["sources"][:1]
    assert kind_problems(multi)

    cross = _first(items, "crosslingual")
    cross["answers"] = [a for a in cross["answers"] if not HANGUL_RE.search(a)]
    assert kind_problems(cross)


@pytest.mark.unit
def test_evidence_check_rejects_bad_spans(items: list[dict]) -> None:
    item = _first(items, "factual")
    assert evidence_problems(item) == []

    short = copy.deepcopy(item)
    short["evidence"] = [norm(item["evidence"][0])[:10]]
    assert evidence_problems(short)

    long = copy.deepcopy(item)
    long["evidence"] = [visible_text(DATA / item["source"])[:300]]
    assert evidence_problems(long)

    invented = copy.deepcopy(item)
    invented["evidence"] = ["this sentence is not in any of the documents at all"]
    assert evidence_problems(invented)

    multi = _first(items, "multi")
    multi["evidence"] = multi["evidence"][:1]
    assert evidence_problems(multi)


@pytest.mark.unit
def test_evidence_may_not_cross_an_html_tag() -> None:
    page = DATA / "en_sampling.html"
    units = text_units(page)
    heading = next(u for u in units if u == "Greedy decoding")
    following = units[units.index(heading) + 1]
    crossing = f"{heading} {following[:30]}"
    assert crossing in visible_text(page)
    item = {"id": "s-999", "kind": "factual", "question": "q", "source": page.name, "evidence": [crossing]}
    assert evidence_problems(item)


@pytest.mark.unit
def test_html_extraction_skips_script_and_style() -> None:
    text = visible_text(DATA / "en_rag_evaluation.html")
    assert "DOMContentLoaded" not in text
    assert "font-family" not in text
    assert "Recall@k asks whether" in text


@pytest.mark.unit
def test_corpus_check_rejects_bad_corpora(docs: list[Path]) -> None:
    assert corpus_problems(docs[:5])
    assert corpus_problems([d for d in docs if d.suffix == ".md"] * 3)
    korean = [d for d in docs if is_korean(visible_text(d))]
    english = [d for d in docs if not is_korean(visible_text(d))]
    assert len(korean) >= 3 and len(english) >= 3
    too_korean = korean + english[:3]
    too_english = korean[:3] + english
    if 8 <= len(too_korean) <= 12:  # isolate the language-share check where possible
        assert any("Korean" in p for p in corpus_problems(too_korean))
    assert corpus_problems(too_korean)
    if 8 <= len(too_english) <= 12:
        assert any("Korean" in p for p in corpus_problems(too_english))
    assert corpus_problems(too_english)
    assert is_korean("토큰화는 문장을 조각으로 나눕니다. BPE")
    assert not is_korean("Tokenisation splits text into pieces. 토큰")
