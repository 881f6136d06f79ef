"""Benchmark the packaged embedders: retrieval quality on the QA sets, embedding speed, load time.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedders.py                 # every packaged embedder
    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedders.py --models use-m,static-m --threads 1

For each QA set — ``../shared/eval/seeds_dev_qa.jsonl`` over ``../shared/corpus/seeds/*.txt``
and, when present, ``data/qa.jsonl`` over the documents in ``data/`` — the documents are cut
into the same chunks for every embedder (paragraph- and sentence-aware, ~800 characters, ~100
overlap), all chunks are embedded as documents, every answerable question as a query, and the
chunks are ranked by cosine. Relevance follows ``../shared/eval/README.md``: a chunk is
relevant when it holds an evidence span, or >= 60 % of one as one contiguous piece.

Reported per QA set and per question group (lang/kind): Recall@5 (share of questions with a
relevant chunk in the top 5) and MRR@10. Speed: documents embedded per second with torch at
1 and 2 threads (the same chunk sample each time; best of a few interleaved rounds, because a
shared machine makes single timings swing), the mean latency of one query, and the load time
(sentence-transformers already imported). Prints a table, writes
``bench/results/embedders.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything from here

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = REPO / "bench" / "results" / "embedders.json"
DOC_SUFFIXES = {".txt", ".md", ".html", ".htm"}
REFERENCE = {"minilm"}  # English-only: measured as a reference, not a candidate for the default

# --- documents -----------------------------------------------------------------------------


class _VisibleText(HTMLParser):
    """Visible text of an HTML page; block elements end a paragraph; script/style/nav dropped."""

    _SKIP = {"script", "style", "head", "title", "template", "noscript", "nav", "svg"}
    _BLOCK = {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "li", "ul", "ol", "dl", "dt", "dd",
        "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "tr", "br", "hr", "figcaption", "caption",
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        elif tag in {"td", "th"}:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        raw = "".join(self.parts)
        paragraphs = [re.sub(r"[ \t\r\f\v]*\n[ \t\r\f\v]*", " ", p).strip() for p in re.split(r"\n\s*\n", raw)]
        return "\n\n".join(re.sub(r"[ \t]+", " ", p) for p in paragraphs if p.strip())


def read_document(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in {".html", ".htm"}:
        parser = _VisibleText()
        parser.feed(text)
        parser.close()
        return parser.text()
    return text


# --- chunking (the same for every embedder) ------------------------------------------------


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?。？！])\s+", paragraph) if s.strip()]


def chunk_text(text: str, size: int = 800, overlap: int = 100) -> list[str]:
    """Pack sentences (inside paragraphs) into chunks of <= ``size`` chars; carry ~``overlap`` chars."""
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = re.sub(r"\s+", " ", paragraph).strip()
        if not paragraph:
            continue
        for sentence in _sentences(paragraph):
            while len(sentence) > size:  # a run-on "sentence": hard split at a space
                cut = sentence.rfind(" ", size // 2, size)
                cut = cut if cut > 0 else size
                units.append(sentence[:cut].strip())
                sentence = sentence[max(0, cut - overlap) :].strip()
            units.append(sentence)
        units.append("")  # paragraph boundary marker
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for unit in units:
        if not unit:
            if current and length >= size * 0.6:  # end a well-filled chunk at a paragraph end
                chunks.append(" ".join(current))
                current, length = _tail(current, overlap)
            continue
        if current and length + 1 + len(unit) > size:
            chunks.append(" ".join(current))
            current, length = _tail(current, overlap)
        current.append(unit)
        length += len(unit) + 1
    if current and (not chunks or " ".join(current) not in chunks[-1]):
        chunks.append(" ".join(current))
    return chunks


def _tail(sentences: list[str], overlap: int) -> tuple[list[str], int]:
    """Trailing sentences of a chunk totalling <= ``overlap`` chars (the overlap carried on)."""
    kept: list[str] = []
    total = 0
    for sentence in reversed(sentences):
        if total + len(sentence) + 1 > overlap:
            break
        kept.insert(0, sentence)
        total += len(sentence) + 1
    return kept, total


# --- QA sets and relevance (../shared/eval/README.md) --------------------------------------


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def is_relevant(chunk: str, evidence: list[str], min_frac: float = 0.6) -> bool:
    c = norm(chunk)
    for span in map(norm, evidence):
        if span in c:
            return True
        m = SequenceMatcher(None, span, c, autojunk=False).find_longest_match(0, len(span), 0, len(c))
        if m.size >= min_frac * len(span):
            return True
    return False


@dataclass
class QASet:
    name: str
    corpus: str
    chunks: list[str]
    chunk_sources: list[str]
    items: list[dict[str, Any]]  # answerable only, each with "relevant": set of chunk indices
    skipped: int = 0
    n_docs: int = 0


def load_qa_set(name: str, qa_path: Path, doc_paths: list[Path], corpus: str) -> QASet:
    chunks: list[str] = []
    sources: list[str] = []
    for path in doc_paths:
        for chunk in chunk_text(read_document(path)):
            chunks.append(chunk)
            sources.append(path.name)
    items, skipped = [], 0
    for line in qa_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if item.get("kind") == "unanswerable" or not item.get("evidence"):
            skipped += 1
            continue
        item["relevant"] = {i for i, c in enumerate(chunks) if is_relevant(c, item["evidence"])}
        items.append(item)
    return QASet(name, corpus, chunks, sources, items, skipped, len(doc_paths))


def qa_sets(shared: Path, data_dir: Path) -> list[QASet]:
    sets = [
        load_qa_set(
            "seeds-dev",
            shared / "eval" / "seeds_dev_qa.jsonl",
            sorted((shared / "corpus" / "seeds").glob("*.txt")),
            "shared/corpus/seeds",
        )
    ]
    qa = data_dir / "qa.jsonl"
    docs = sorted(p for p in data_dir.glob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)
    if qa.is_file() and docs:
        sets.append(load_qa_set("data", qa, docs, "data/"))
    else:
        print(f"note: {qa} or its documents are missing; measuring the seeds set only", file=sys.stderr)
    return sets


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Scores:
    n: int
    recall_at_5: float
    mrr_at_10: float


@dataclass
class ModelResult:
    name: str
    model_id: str
    description: str
    dimension: int = 0
    load_s: float = 0.0
    docs_per_s: dict[str, float] = field(default_factory=dict)  # threads -> passages/s (best round)
    speed_rounds: int = 0
    query_ms: float = 0.0
    tokens_per_chunk: float = 0.0
    max_seq_length: int | None = None
    truncated_chunks: int = 0
    quality: dict[str, dict[str, Scores]] = field(default_factory=dict)  # set -> group -> scores
    error: str | None = None


def score(rankings: list[list[int]], items: list[dict[str, Any]]) -> Scores:
    hits, rr = 0, 0.0
    for ranking, item in zip(rankings, items, strict=True):
        relevant = item["relevant"]
        hits += any(i in relevant for i in ranking[:5])
        rr += next((1.0 / (r + 1) for r, i in enumerate(ranking[:10]) if i in relevant), 0.0)
    n = len(items)
    return Scores(n, hits / n if n else 0.0, rr / n if n else 0.0)


def groups(items: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"all": list(range(len(items)))}
    for i, item in enumerate(items):
        out.setdefault(f"{item.get('lang', '?')}/{item.get('kind', '?')}", []).append(i)
    return out


def measure(
    name: str, sets: list[QASet], threads: list[int], speed_sample: int, rounds: int = 3, budget_s: float = 60.0
) -> ModelResult:
    import numpy as np
    import torch

    from saem.models.embedders import SentenceTransformerEmbeddings
    from saem.models.registry import PACKAGED, resolve

    resolved = resolve(f"packaged:{name}", "embed")
    result = ModelResult(name, resolved.model_id, PACKAGED[name].description)
    embedder = SentenceTransformerEmbeddings(resolved, batch_size=32)
    torch.set_num_threads(threads[0])
    t0 = time.perf_counter()
    embedder.load()
    result.load_s = time.perf_counter() - t0
    result.dimension = embedder.dimension
    result.max_seq_length = embedder.max_seq_length

    all_chunks = [c for s in sets for c in s.chunks]
    counts = [embedder.tokenizer_count(c) for c in all_chunks]
    result.tokens_per_chunk = float(np.mean(counts))
    if result.max_seq_length:
        result.truncated_chunks = sum(c > result.max_seq_length for c in counts)

    # quality
    q_times = []
    for qa in sets:
        doc_vecs = np.asarray(embedder.embed_documents(qa.chunks), dtype=np.float32)
        rankings = []
        for item in qa.items:
            t0 = time.perf_counter()
            q = np.asarray(embedder.embed_query(item["question"]), dtype=np.float32)
            q_times.append(time.perf_counter() - t0)
            rankings.append([int(i) for i in np.argsort(-(doc_vecs @ q))[:10]])
        result.quality[qa.name] = {
            group: score([rankings[i] for i in idx], [qa.items[i] for i in idx])
            for group, idx in groups(qa.items).items()
        }
    result.query_ms = 1000 * float(np.mean(q_times))

    # speed: the same evenly spread sample of chunks (Korean and English) at each thread count
    step = max(1, len(all_chunks) // speed_sample) if speed_sample else 1
    sample = all_chunks[::step][:speed_sample] if speed_sample else all_chunks
    # Best of up to ``rounds`` interleaved rounds: on a shared machine a busy neighbour core
    # makes single timings (multi-threaded ones above all) swing by several times.
    best: dict[int, float] = {}
    started = time.perf_counter()
    for round_no in range(rounds):
        if round_no and time.perf_counter() - started > budget_s:
            break
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            embedder.embed_documents(sample[:4])  # warm the thread pool
            t0 = time.perf_counter()
            embedder.embed_documents(sample)
            best[n_threads] = min(best.get(n_threads, math.inf), time.perf_counter() - t0)
        result.speed_rounds = round_no + 1
    result.docs_per_s = {str(t): len(sample) / best[t] for t in threads}
    torch.set_num_threads(threads[0])
    return result


# --- output --------------------------------------------------------------------------------


def print_table(results: list[ModelResult], sets: list[QASet], threads: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(150, Console().width))
    for qa in sets:
        names = list(groups(qa.items))
        table = Table(title=f"{qa.name}: {len(qa.items)} answerable questions ({qa.skipped} skipped), "
                      f"{len(qa.chunks)} chunks from {qa.n_docs} docs — Recall@5 / MRR@10")  # fmt: skip
        table.add_column("embedder")
        for g in names:
            n = sum(1 for _ in groups(qa.items)[g])
            table.add_column(f"{g} (n={n})", justify="right")
        for r in results:
            if r.error:
                table.add_row(r.name, *(["error"] * len(names)))
                continue
            cells = [f"{r.quality[qa.name][g].recall_at_5:.2f} / {r.quality[qa.name][g].mrr_at_10:.2f}" for g in names]
            table.add_row(r.name + (" (ref)" if r.name in REFERENCE else ""), *cells)
        console.print(table)
    speed = Table(title="speed: best of a few rounds over one chunk sample (shared CPU: expect noise, most at 2T)")
    for col in ("embedder", "dim", "load s", *(f"passages/s @{t}T" for t in threads), "query ms", "tok/chunk",
                "max tok", "truncated"):  # fmt: skip
        speed.add_column(col, justify="right" if col != "embedder" else "left")
    for r in results:
        if r.error:
            speed.add_row(r.name, "-", "-", *(["-"] * len(threads)), "-", "-", "-", r.error[:60])
            continue
        speed.add_row(
            r.name,
            str(r.dimension),
            f"{r.load_s:.2f}",
            *(f"{r.docs_per_s.get(str(t), float('nan')):.1f}" for t in threads),
            f"{r.query_ms:.1f}",
            f"{r.tokens_per_chunk:.0f}",
            str(r.max_seq_length or "-"),
            str(r.truncated_chunks),
        )
    console.print(speed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="", help="comma-separated packaged names (default: all embedders)")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to time, first one used for quality")
    parser.add_argument("--speed-sample", type=int, default=64, help="chunks timed per thread count (0 = all)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per thread count (best is kept)")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared folder (corpus + QA)")
    parser.add_argument("--data", type=Path, default=REPO / "data", help="the project's sample corpus + qa.jsonl")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    if not (args.shared / "eval" / "seeds_dev_qa.jsonl").is_file():
        print(
            f"error: {args.shared} (with eval/seeds_dev_qa.jsonl and corpus/seeds/) is missing.\n"
            "This benchmark reads the shared development corpus that sits beside the repository; "
            "run it from a checkout that has ../shared, or pass --shared PATH.",
            file=sys.stderr,
        )
        return 2

    sys.path.insert(0, str(REPO))
    from saem.models.registry import packaged_names

    names = [n for n in args.models.split(",") if n] or packaged_names("embed")
    threads = [int(t) for t in args.threads.split(",") if t]
    sets = qa_sets(args.shared, args.data)

    t0 = time.perf_counter()
    import sentence_transformers  # noqa: F401  (import cost is not any one model's load time)
    import torch

    import_s = time.perf_counter() - t0
    results: list[ModelResult] = []
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        try:
            results.append(measure(name, sets, threads, args.speed_sample, args.rounds))
        except Exception as err:  # one broken model must not hide the others' numbers
            results.append(ModelResult(name, f"packaged:{name}", "", error=f"{type(err).__name__}: {err}"))
    print_table(results, sets, threads)

    payload = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "import_sentence_transformers_s": round(import_s, 2),
        },
        "chunking": {"size_chars": 800, "overlap_chars": 100, "rule": "paragraph/sentence packing"},
        "qa_sets": [
            {
                "name": s.name,
                "corpus": s.corpus,
                "docs": s.n_docs,
                "chunks": len(s.chunks),
                "answerable": len(s.items),
                "skipped_unanswerable": s.skipped,
                "no_relevant_chunk": [i["id"] for i in s.items if not i["relevant"]],
            }
            for s in sets
        ],  # fmt: skip
        "results": [asdict(r) for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
