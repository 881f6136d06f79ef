"""Benchmark saem's hybrid retrieval against a plain LangChain pipeline; measure latency.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py            # everything (~15-25 min on 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py --quick    # no e5-small, small LLM subset, 1k scale
    .venv/bin/python bench/retrieval.py --latency-only --scale-dir /tmp/bench_latency   # stores kept for reruns
    .venv/bin/python bench/retrieval.py --no-llm --scale '' --sets data --systems 'saem hybrid,lc faiss' \
        --store-dir /tmp/bench_stores   # iterate: some sets / systems (to retrieval.partial.json), stores kept

Quality, per QA set (``../shared/eval/seeds_dev_qa.jsonl`` over ``../shared/corpus/seeds/*.txt``;
``data/qa.jsonl`` over ``data/`` without ``qa.jsonl``) and per group (ko / en / crosslingual):
Recall@1/5/10, MRR@10, nDCG@10 (binary gains; the ideal ranking has every relevant chunk of
the store). Relevance follows ``../shared/eval/README.md`` (the chunk holds an evidence span, or
>= 60 % of one as one contiguous piece). Unanswerable items are left out of the metrics and
used for the threshold table (best cosine of answerable vs unanswerable questions).

Systems: saem (ingested with the default embedder, use-m; chunks of ``chunk_tokens``): dense only
(with and without ``neighbour_weight``), lexical only (FTS5 + Kiwi), hybrid (relative score
fusion; cross-lingual queries dense only, read with their neighbours, see
``saem.retrieval.hybrid``), hybrid without neighbours, hybrid with the fixed lexical weight
(``cross_lingual_lexical_weight=None``, the rule before it), hybrid + embedder rerank (use-m re-scoring the top
``rerank_candidates``), hybrid + LLM pointwise rerank (packaged SmolLM2; on a subset of
questions, top 5, passages cut to 300 chars — it is slow); the same dense / hybrid / fixed-weight
hybrid over a second store embedded with ``packaged:e5-small`` (not with ``--quick``: it embeds
a few passages a second); and the LangChain baseline:
``RecursiveCharacterTextSplitter(1000, 200)``, ``BM25Retriever`` (rank-bm25), FAISS with MiniLM
and with e5-small, and ``EnsembleRetriever`` (BM25 + FAISS, weights 0.5/0.5). Both sides read
the same extracted text (``bench/embedders.read_document``).

Latency: p50/p95 of ``HybridSearcher.search`` (k=10) per saem system on the QA questions, and at
growing store sizes (1k/10k/100k chunks) built from the Debian GIMP Korean help and Python HTML
docs with the fast ``packaged:static-m`` embedder (quality of that embedder is irrelevant here;
the 100k store repeats the corpus in copied folders, which ingest reuses without re-embedding).
Prints tables; writes ``bench/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from embedders import is_relevant, read_document  # noqa: E402

SHARED = REPO.parent / "shared"
RESULTS = REPO / "bench" / "results" / "retrieval.json"
SCALE_SOURCES = (Path("/usr/share/gimp/2.0/help/ko"), Path("/usr/share/doc/python3.11/html"))
GROUPS = ("ko", "en", "crosslingual", "all")

Search = Callable[[str], list[str]]  # question -> texts of the top 10, best first


def group_of(item: dict[str, Any]) -> str:
    return "crosslingual" if item.get("kind") == "crosslingual" else str(item.get("lang", "?"))


def metrics(flags: list[bool], n_relevant: int) -> dict[str, float]:
    """R@1/5/10, reciprocal rank within 10, nDCG@10 for one ranked list of relevance flags."""
    top = flags[:10]
    dcg = sum(1.0 / math.log2(i + 2) for i, f in enumerate(top) if f)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(max(n_relevant, any(top)), 10)))
    return {
        "R@1": float(any(top[:1])),
        "R@5": float(any(top[:5])),
        "R@10": float(any(top)),
        "MRR@10": next((1.0 / (i + 1) for i, f in enumerate(top) if f), 0.0),
        "nDCG@10": dcg / ideal if ideal else 0.0,
    }


def evaluate(search: Search, items: list[dict[str, Any]], all_chunks: list[str]) -> dict[str, Any]:
    per_group: dict[str, list[dict[str, float]]] = {g: [] for g in GROUPS}
    times: list[float] = []
    for item in items:
        t0 = time.perf_counter()
        texts = search(item["question"])
        times.append(time.perf_counter() - t0)
        flags = [is_relevant(t, item["evidence"]) for t in texts[:10]]
        n_rel = sum(is_relevant(c, item["evidence"]) for c in all_chunks)
        m = metrics(flags, n_rel)
        per_group[group_of(item)].append(m)
        per_group["all"].append(m)
    out: dict[str, Any] = {}
    for g, rows in per_group.items():
        if rows:
            out[g] = {"n": len(rows), **{k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}}
    times.sort()
    out["latency_ms"] = {"p50": 1000 * pct(times, 50), "p95": 1000 * pct(times, 95), "n": len(times)}
    return out


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


# --- the QA sets ---------------------------------------------------------------------------


def qa_sets(data: Path) -> list[dict[str, Any]]:
    def load(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    return [
        {"name": "seeds-dev", "docs": sorted((SHARED / "corpus" / "seeds").glob("*.txt")),
         "items": load(SHARED / "eval" / "seeds_dev_qa.jsonl")},
        {"name": "data", "docs": sorted(p for p in data.iterdir() if p.is_file() and p.name != "qa.jsonl"),
         "items": load(data / "qa.jsonl")},
    ]  # fmt: skip


# --- saem ----------------------------------------------------------------------------------


def saem_store(work: Path, name: str, docs: list[Path], embed_model: str) -> Any:
    """``docs`` ingested into ``work/<name>-<embedder>-saem`` (one data dir per embedder)."""
    from saem.app.saem import Saem

    folder = work / f"{name}-docs"
    folder.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        shutil.copy(doc, folder / doc.name)
    app = Saem(data_dir=work / f"{name}-{embed_model.split(':')[-1]}-saem", embed_model=embed_model)
    app.ingest(folder)
    return app


def chunk_texts(app: Any) -> list[str]:
    import sqlite3

    with sqlite3.connect(app.settings.db_path) as conn:
        return [r[0] for r in conn.execute("SELECT text FROM chunks ORDER BY id")]


def saem_systems(app: Any, llm: Any, quick: bool) -> dict[str, tuple[Any, int | None]]:
    """name -> (searcher, question limit)."""
    from saem.retrieval.hybrid import HybridConfig, HybridSearcher
    from saem.retrieval.rerank import EmbedderReranker, LlmReranker

    def make(reranker: Any = None, **cfg: Any) -> Any:
        return HybridSearcher(app.settings.data_dir, app.embedder, reranker=reranker, config=HybridConfig(**cfg))

    systems: dict[str, tuple[Any, int | None]] = {
        "saem dense": (make(lexical_weight=0.0), None),
        "saem dense, no neighbours": (make(lexical_weight=0.0, neighbour_weight=0.0), None),
        "saem lexical": (make(dense_weight=0.0), None),
        "saem hybrid": (make(), None),
        "saem hybrid, fixed weight": (make(cross_lingual_lexical_weight=None), None),
        "saem hybrid, no neighbours": (make(neighbour_weight=0.0), None),
        "saem hybrid+embedder": (make(EmbedderReranker(app.embedder), rerank_candidates=20), None),
    }
    if llm is not None:
        limit = 8 if quick else 16
        systems["saem hybrid (LLM subset)"] = (make(), limit)
        systems["saem hybrid+llm (subset)"] = (make(LlmReranker(llm, max_chars=300), rerank_candidates=5), limit)
    return systems


def saem_e5_systems(app: Any) -> dict[str, tuple[Any, int | None]]:
    """The e5-small store's systems (no lexical-only one: BM25 does not use the embedder)."""
    from saem.retrieval.hybrid import HybridConfig, HybridSearcher

    def make(**cfg: Any) -> Any:
        return HybridSearcher(app.settings.data_dir, app.embedder, config=HybridConfig(**cfg))

    return {
        "saem dense, e5-small": (make(lexical_weight=0.0), None),
        "saem hybrid, e5-small": (make(), None),
        "saem hybrid, e5-small, fixed weight": (make(cross_lingual_lexical_weight=None), None),
    }


def _texts_of(searcher: Any) -> Search:
    return lambda q: [h.text for h in searcher.search(q, k=10).hits]


# --- LangChain baseline --------------------------------------------------------------------


def langchain_systems(docs: list[Path], embedders: dict[str, Any]) -> tuple[dict[str, Search], list[str], float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_classic.retrievers import EnsembleRetriever
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = splitter.split_documents([Document(read_document(p), metadata={"source": p.name}) for p in docs])
    texts = [c.page_content for c in chunks]
    bm25 = BM25Retriever.from_documents(chunks, k=10)

    def run(retriever: Any) -> Search:
        return lambda q: [d.page_content for d in retriever.invoke(q)][:10]

    systems: dict[str, Search] = {"lc bm25": run(bm25)}
    for name, emb in embedders.items():
        store = FAISS.from_documents(chunks, emb)
        dense = store.as_retriever(search_kwargs={"k": 10})
        systems[f"lc faiss-{name}"] = run(dense)
        systems[f"lc ensemble-{name}"] = run(EnsembleRetriever(retrievers=[bm25, dense], weights=[0.5, 0.5]))
    return systems, texts, sum(map(len, texts)) / max(1, len(texts))


# --- latency at scale ----------------------------------------------------------------------


def save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


def scale_store(root: Path, size: int, embed_model: str = "packaged:static-m") -> tuple[Any, float]:
    """A store of at least ``size`` chunks in ``root/<size>`` (reused when already built)."""
    from saem.app.saem import Saem

    files = [(src, p) for src in SCALE_SOURCES if src.is_dir() for p in sorted(src.rglob("*.html"))]
    app = Saem(data_dir=root / str(size) / "saem", embed_model=embed_model)
    docs = root / str(size) / "docs"
    t0 = time.perf_counter()
    pos, copy_no = 0, 0
    while app.stats().chunks < size:
        if pos < len(files):
            batch = files[pos : pos + 40]
            pos += len(batch)
            for src, f in batch:
                dest = docs / "c0" / src.name / f.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dest)
        else:  # the corpus is used up: copy it again (ingest reuses the vectors of equal files)
            copy_no += 1
            while (docs / f"c{copy_no}").exists():
                copy_no += 1
            shutil.copytree(docs / "c0", docs / f"c{copy_no}")
        app.ingest(docs)
    return app, time.perf_counter() - t0


def scale_latency(
    root: Path,
    sizes: list[int],
    questions: list[str],
    report: Callable[[dict[str, Any]], Any],
    *,
    k: int = 10,
    embed_model: str = "packaged:static-m",
) -> None:
    """One static-m store per size (under ``root``, reused between runs); ``report`` each row.

    Per searcher: p50/p95 of the whole ``search`` call (k=``k``), and of its stages
    (``result.timings``: embed, dense, lexical, rerank), over ``questions`` after one warm-up.
    """
    from saem.retrieval.hybrid import HybridConfig, HybridSearcher
    from saem.retrieval.rerank import EmbedderReranker

    if not any(src.is_dir() for src in SCALE_SOURCES):
        print("no scale corpus: apt-get install -y gimp-help-ko python3.11-doc", file=sys.stderr)
        return
    for size in sizes:
        app, build_s = scale_store(root / embed_model.split(":")[-1], size, embed_model)
        n = app.stats().chunks
        row: dict[str, Any] = {"target": size, "chunks": n, "build_s": build_s, "k": k, "embed_model": embed_model}
        for label, reranker in (("hybrid", None), ("hybrid+embedder", EmbedderReranker(app.embedder))):
            searcher = HybridSearcher(app.settings.data_dir, app.embedder, reranker=reranker, config=HybridConfig())
            searcher.search("warm up 준비", k=k)  # loads Kiwi (once per process, ≈ 2 s) outside the timings
            times: list[float] = []
            stages: dict[str, list[float]] = {}
            for q in questions:
                t1 = time.perf_counter()
                res = searcher.search(q, k=k)
                times.append(time.perf_counter() - t1)
                for stage, sec in res.timings.items():
                    stages.setdefault(stage, []).append(sec)
            times.sort()
            row[label] = {"p50_ms": 1000 * pct(times, 50), "p95_ms": 1000 * pct(times, 95),
                          "max_ms": 1000 * times[-1],
                          "stages_p95_ms": {st: 1000 * pct(sorted(v), 95) for st, v in stages.items()}}  # fmt: skip
        report(row)
        print(f"scale {n} chunks: {json.dumps(row)}", flush=True)


# --- output --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")), "")  # fmt: skip
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu or platform.processor(),
            "memory_gib": round(mem / 2**30), "platform": platform.platform()}  # fmt: skip


def markdown_tables(results: dict[str, Any]) -> str:
    """The README's retrieval tables: every system, every group, every metric, chunk size."""
    out = []
    m = results.get("machine", {})
    out.append(f"Measured {results.get('when', '?')[:10]} on {m.get('cpus', '?')} cores ({m.get('cpu', '?')}), "
               f"{m.get('memory_gib', '?')} GiB, Python {m.get('python', '?')}.")  # fmt: skip
    for set_name, res in results.get("quality", {}).items():
        groups = [g for g in GROUPS if any(g in r for r in res["systems"].values())]
        counts = {g: next(r[g]["n"] for r in res["systems"].values() if g in r) for g in groups}
        out.append("")
        out.append(f"**{set_name}** — R@1 / R@5 / R@10 / MRR@10 / nDCG@10 per group (n questions)")
        out.append("")
        names = {g: "cross-lingual" if g == "crosslingual" else g for g in groups}
        head = ["system", "chunk chars"] + [f"{names[g]} ({counts[g]})" for g in groups]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for name, r in res["systems"].items():
            store = "langchain" if not name.startswith("saem") else "saem e5-small" if "e5-small" in name else "saem"
            cells = [" / ".join(f"{r[g][k]:.2f}" for k in ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")) if g in r
                     else "–" for g in groups]  # fmt: skip
            label = f"**{name}**" if name == "saem hybrid" else name
            out.append(f"| {label} | {res['chunk_chars'][store]:.0f} | " + " | ".join(cells) + " |")
    if results.get("scale"):
        out.append("")
        out.append("| embedder | chunks | hybrid p50 / p95 ms | hybrid + embedder rerank p50 / p95 ms |")
        out.append("|---|---|---|---|")
        for row in results["scale"]:
            h, e = row["hybrid"], row.get("hybrid+embedder", row.get("hybrid+embedder(static-m)", {}))
            rerank = f"{e.get('p50_ms', 0):.0f} / {e.get('p95_ms', 0):.0f}"
            out.append(f"| {row.get('embed_model', 'packaged:static-m')} | {row['chunks']:,} | "
                       f"{h['p50_ms']:.0f} / {h['p95_ms']:.0f} | {rerank} |")  # fmt: skip
    return "\n".join(out)


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for set_name, res in results["quality"].items():
        table = Table(title=f"{set_name}: R@1 / R@5 / R@10 / MRR@10 / nDCG@10 (answerable questions)")
        table.add_column("system")
        table.add_column("chunk chars", justify="right")
        for g in GROUPS:
            n = next((r[g]["n"] for r in res["systems"].values() if g in r), 0)
            table.add_column(f"{g} (n={n})", justify="right")
        table.add_column("p50/p95 ms", justify="right")
        for name, r in res["systems"].items():
            cells = [
                " / ".join(f"{r[g][k]:.2f}" for k in ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")) if g in r else "-"
                for g in GROUPS
            ]
            lat = r["latency_ms"]
            store = "langchain" if not name.startswith("saem") else "saem e5-small" if "e5-small" in name else "saem"
            chars = res["chunk_chars"][store]
            table.add_row(name, f"{chars:.0f}", *cells, f"{lat['p50']:.0f} / {lat['p95']:.0f}")
        console.print(table)
    th = results.get("threshold")
    if th:
        console.print(f"best cosine (saem hybrid, use-m): answerable min/median {th['answerable_min']:.3f}/"
                      f"{th['answerable_median']:.3f}; unanswerable max {th['unanswerable_max']:.3f} "
                      f"(n={th['n_unanswerable']})")  # fmt: skip
    if results.get("scale"):
        k = results["scale"][0].get("k", 5)
        table = Table(title=f"retrieve latency (k={k}) vs store size, p50 / p95 ms")
        for col in ("embedder", "chunks", "build s", "hybrid", "hybrid+embedder rerank"):
            table.add_column(col, justify="right")
        for row in results["scale"]:
            h, e = row["hybrid"], row.get("hybrid+embedder", row.get("hybrid+embedder(static-m)", {}))
            table.add_row(row.get("embed_model", "packaged:static-m"), str(row["chunks"]), f"{row['build_s']:.0f}",
                          f"{h['p50_ms']:.0f} / {h['p95_ms']:.0f}",
                          f"{e.get('p50_ms', 0):.0f} / {e.get('p95_ms', 0):.0f}")  # fmt: skip
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="no e5-small, small LLM subset, 1k scale only")
    parser.add_argument("--no-llm", action="store_true", help="skip the LLM reranker")
    parser.add_argument("--scale", default=None, help="store sizes for latency, e.g. 1000,10000,100000 ('' = none)")
    parser.add_argument("--latency-only", action="store_true", help="only the latency-vs-store-size part")
    parser.add_argument("--scale-dir", type=Path, default=None, help="keep the scale stores here, reuse them")
    parser.add_argument(
        "--scale-embedder",
        default="packaged:static-m",
        help="embedder of the scale stores (static-m: fast to build; packaged:use-m: the default, 512 dims)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print README tables from the results JSON (--out) and exit"
    )
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sets", default=None, help="QA sets to run, comma-separated (seeds-dev,data; default all)")
    parser.add_argument(
        "--systems",
        default=None,
        help="only systems whose name contains one of these comma-separated strings "
        "(e.g. 'saem hybrid,lc faiss'); stores no selected system needs are not built",
    )
    parser.add_argument(
        "--store-dir", type=Path, default=None, help="keep the saem stores here and reuse them (ingest is incremental)"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_tables(json.loads(args.out.read_text(encoding="utf-8"))))
        return 0
    if args.systems is not None or args.sets is not None:
        partial = args.out == RESULTS
        if partial:  # a partial run must not overwrite the full results
            args.out = RESULTS.with_name("retrieval.partial.json")
    if not (SHARED / "eval" / "seeds_dev_qa.jsonl").is_file():
        print(f"error: {SHARED}/eval/seeds_dev_qa.jsonl is missing (the shared corpus)", file=sys.stderr)
        return 2
    scale = args.scale if args.scale is not None else ("1000" if args.quick else "1000,10000,100000")
    sizes = [int(s) for s in scale.split(",") if s]
    if args.latency_only:
        return latency_only(args, sizes)

    import torch

    torch.set_num_threads(1)  # measured faster than 2 on this shared 2-core machine
    from saem.models.embedders import SentenceTransformerEmbeddings
    from saem.models.registry import resolve

    baseline_embedders = {"minilm": SentenceTransformerEmbeddings(resolve("packaged:minilm", "embed"))}
    if not args.quick:
        baseline_embedders["e5-small"] = SentenceTransformerEmbeddings(resolve("packaged:e5-small", "embed"))
    llm = None
    if not args.no_llm:
        from saem.models.llamacpp import LlamaCppChatModel

        llm = LlamaCppChatModel(n_ctx=2048)

    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": machine(),
        "quick": args.quick,
        "quality": {},
    }
    work = args.store_dir or Path(tempfile.mkdtemp(prefix="saem-bench-retrieval-"))
    wanted = [w.strip() for w in args.systems.split(",")] if args.systems else None

    def selected(name: str) -> bool:
        return wanted is None or any(w in name for w in wanted)

    set_names = {s.strip() for s in args.sets.split(",")} if args.sets else None
    scale_root = args.scale_dir or work / "scale"
    answerable_best: list[float] = []
    unanswerable_best: list[float] = []
    try:
        for qa in qa_sets(args.data):
            if set_names is not None and qa["name"] not in set_names:
                continue
            items = [i for i in qa["items"] if i.get("evidence") and i.get("kind") != "unanswerable"]
            app = saem_store(work, qa["name"], qa["docs"], "packaged:use-m")
            saem_chunks = chunk_texts(app)
            entry: dict[str, Any] = {"systems": {}, "chunk_chars": {}, "chunks": {}}
            entry["chunk_chars"]["saem"] = sum(map(len, saem_chunks)) / len(saem_chunks)
            entry["chunks"]["saem"] = len(saem_chunks)
            for name, (searcher, limit) in saem_systems(app, llm, args.quick).items():
                if not selected(name) and name != "saem hybrid":
                    continue
                subset = items[:limit] if limit else items
                search = _texts_of(searcher)
                search("warm up")
                entry["systems"][name] = evaluate(search, subset, saem_chunks)
                print(f"{qa['name']} {name}: {entry['systems'][name]['all']}", flush=True)
                if name == "saem hybrid":
                    for item in qa["items"]:
                        hits = searcher.search(item["question"], k=5).hits
                        best = max((h.cosine for h in hits), default=0.0)
                        (unanswerable_best if item.get("kind") == "unanswerable" else answerable_best).append(best)
            if not args.quick and any(selected(n) for n in ("saem dense, e5-small", "saem hybrid, e5-small")):
                e5_app = saem_store(work, qa["name"], qa["docs"], "packaged:e5-small")
                e5_chunks = chunk_texts(e5_app)
                entry["chunk_chars"]["saem e5-small"] = sum(map(len, e5_chunks)) / len(e5_chunks)
                entry["chunks"]["saem e5-small"] = len(e5_chunks)
                for name, (searcher, _) in saem_e5_systems(e5_app).items():
                    if not selected(name):
                        continue
                    search = _texts_of(searcher)
                    search("warm up")
                    entry["systems"][name] = evaluate(search, items, e5_chunks)
                    print(f"{qa['name']} {name}: {entry['systems'][name]['all']}", flush=True)
            lc_names = ["lc bm25"] + [f"lc {kind}-{e}" for e in baseline_embedders for kind in ("faiss", "ensemble")]
            if not any(selected(n) for n in lc_names):
                results["quality"][qa["name"]] = entry
                continue
            lc, lc_chunks, lc_chars = langchain_systems(qa["docs"], baseline_embedders)
            entry["chunk_chars"]["langchain"], entry["chunks"]["langchain"] = lc_chars, len(lc_chunks)
            for name, search in lc.items():
                if not selected(name):
                    continue
                entry["systems"][name] = evaluate(search, items, lc_chunks)
                print(f"{qa['name']} {name}: {entry['systems'][name]['all']}", flush=True)
            results["quality"][qa["name"]] = entry
        answerable_best.sort()
        results["threshold"] = (
            {}
            if not unanswerable_best
            else {
                "answerable_min": answerable_best[0],
                "answerable_median": answerable_best[len(answerable_best) // 2],
                "unanswerable_max": max(unanswerable_best),
                "n_unanswerable": len(unanswerable_best),
            }
        )
        if not sizes and args.out.is_file():  # no scale part this time: keep the last run's rows
            previous = json.loads(args.out.read_text(encoding="utf-8"))
            results.update({key: previous[key] for key in ("scale", "scale_when") if key in previous})
        save(args.out, results)  # quality is kept even if the scale part is cut short
        if sizes:
            questions = [i["question"] for qa in qa_sets(args.data) for i in qa["items"]]
            results["scale"] = []
            results["scale_when"] = results["when"]

            def keep(row: dict[str, Any]) -> None:
                results["scale"].append(row)
                save(args.out, results)

            scale_latency(scale_root, sizes, questions, keep, embed_model=args.scale_embedder)
    finally:
        if args.store_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    save(args.out, results)
    print_tables(results)
    print(markdown_tables(results))
    print(f"wrote {args.out}")
    return 0


def latency_only(args: argparse.Namespace, sizes: list[int]) -> int:
    """``--latency-only``: the scale part alone; it replaces the ``scale`` key of ``args.out``
    and keeps the rest (the quality numbers of the last full run)."""
    results: dict[str, Any] = {"quality": {}}
    if args.out.is_file():
        results = json.loads(args.out.read_text(encoding="utf-8"))
    other = [r for r in results.get("scale", []) if r.get("embed_model", "packaged:static-m") != args.scale_embedder]
    results["scale"] = other  # rows of other embedders are kept; this embedder's are measured again
    results["scale_when"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    questions = [i["question"] for qa in qa_sets(args.data) for i in qa["items"]]
    root = args.scale_dir or Path(tempfile.mkdtemp(prefix="saem-bench-latency-"))
    try:
        scale_latency(root, sizes, questions, results["scale"].append, embed_model=args.scale_embedder)
    finally:
        if args.scale_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    save(args.out, results)
    print_tables({"quality": {}, "scale": results["scale"]})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
