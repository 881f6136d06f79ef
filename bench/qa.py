"""The four development QA sets, their folders, groups and the relevance rule (shared by the benchmarks).

    from qa import load_sets, judge
    for qa in load_sets(REPO / "data"):
        qa.name, qa.folder, qa.items            # the folder is ingested whole
        judge(item, hit_source, hit_text)        # True when the hit is relevant to the item

| set | folder | items |
|---|---|---|
| ``seeds-dev`` | ``../shared/corpus/seeds`` (5 Korean notes) | ``../shared/eval/seeds_dev_qa.jsonl`` |
| ``data`` | ``data/`` (10 notes, Korean and English; ``qa.jsonl`` is not ingested) | ``data/qa.jsonl`` |
| ``gimp-ko`` | ``/usr/share/gimp/2.0/help/ko`` (685 pages, mostly English) | ``…/real/gimp_ko_dev_qa.jsonl`` |
| ``pydoc-en`` | ``/usr/share/doc/python3.11/html`` (530 pages) | ``…/real/pydoc_en_dev_qa.jsonl`` |

Relevance (``../shared/eval/README.md``): after collapsing whitespace, a hit is relevant when its
source path ends with the item's ``source`` (or one of ``sources``) and its text holds an evidence
span whole, or one contiguous piece of a span at least 60 % of the span's length.

Groups: the question's language for ``factual`` and ``multi`` items (``ko``, ``en``), the direction
for ``crosslingual`` ones (``en→ko``: an English question over Korean evidence; ``ko→en``), and
``all``. Unanswerable items are scored apart (abstention).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GIMP_KO = Path("/usr/share/gimp/2.0/help/ko")
PYDOC = Path("/usr/share/doc/python3.11/html")
CORPORA_HINT = "apt-get install -y --no-install-recommends gimp-help-ko python3.11-doc"
GROUPS = ("ko", "en", "en→ko", "ko→en", "all")

_WS = re.compile(r"\s+")


@dataclass
class QASet:
    name: str
    folder: Path  # ingested whole
    items: list[dict[str, Any]]
    real: bool = False  # a whole real folder (HTML pages), not a handful of notes
    exclude: tuple[str, ...] = field(default_factory=tuple)  # file names in ``folder`` not to ingest

    @property
    def answerable(self) -> list[dict[str, Any]]:
        return [i for i in self.items if i.get("evidence") and i.get("kind") != "unanswerable"]

    @property
    def unanswerable(self) -> list[dict[str, Any]]:
        return [i for i in self.items if i.get("kind") == "unanswerable"]


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_sets(data: Path, names: set[str] | None = None, work: Path | None = None) -> list[QASet]:
    """The sets in ``names`` (default all) whose files exist; a missing corpus is reported on stderr.

    ``data/`` holds ``qa.jsonl`` beside the documents; with ``work`` the documents are copied to
    ``work/data-docs`` so the QA file is not ingested.
    """
    import sys

    out: list[QASet] = []
    wanted = names or {"seeds-dev", "data", "gimp-ko", "pydoc-en"}
    if "seeds-dev" in wanted:
        qa = SHARED / "eval" / "seeds_dev_qa.jsonl"
        if qa.is_file():
            out.append(QASet("seeds-dev", SHARED / "corpus" / "seeds", _load(qa)))
        else:
            print(f"skipping seeds-dev: {qa} is missing (the shared corpus)", file=sys.stderr)
    if "data" in wanted:
        folder = data
        if work is not None:
            folder = work / "data-docs"
            folder.mkdir(parents=True, exist_ok=True)
            for p in data.iterdir():
                if p.is_file() and p.name != "qa.jsonl":
                    shutil.copy(p, folder / p.name)
        out.append(QASet("data", folder, _load(data / "qa.jsonl")))
    real = (("gimp-ko", GIMP_KO, "gimp_ko_dev_qa.jsonl"), ("pydoc-en", PYDOC, "pydoc_en_dev_qa.jsonl"))
    for name, root, file in real:
        if name not in wanted:
            continue
        qa = SHARED / "eval" / "real" / file
        if not qa.is_file():
            print(f"skipping {name}: {qa} is missing (the shared eval sets)", file=sys.stderr)
        elif not root.is_dir():
            print(f"skipping {name}: {root} is missing ({CORPORA_HINT})", file=sys.stderr)
        else:
            out.append(QASet(name, root, _load(qa), real=True))
    return out


def group_of(item: dict[str, Any]) -> str:
    lang = str(item.get("lang", "?"))
    if item.get("kind") == "crosslingual":
        return "ko→en" if lang == "ko" else "en→ko"
    return lang


def norm(s: str) -> str:
    return _WS.sub(" ", s).strip()


def holds_evidence(text: str, evidence: list[str]) -> bool:
    """The shared relevance rule of ``saem.evaluation.metrics`` (a span whole, or 60 % of one)."""
    from saem.evaluation.metrics import is_relevant

    return is_relevant(text, evidence)


def source_matches(item: dict[str, Any], source: str) -> bool:
    wanted = item.get("sources") or ([item["source"]] if item.get("source") else [])
    path = source.replace("\\", "/")
    return any(path == w or path.endswith("/" + w) for w in wanted)


def judge(item: dict[str, Any], source: str, text: str) -> bool:
    """Whether a hit (its source path and text) is relevant to ``item``."""
    return bool(item.get("evidence")) and source_matches(item, source) and holds_evidence(text, item["evidence"])
