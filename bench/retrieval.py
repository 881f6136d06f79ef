"""Benchmark saem's hybrid retrieval against a plain LangChain pipeline on four QA sets; measure latency.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py --store-dir /tmp/bench   # everything, stores kept
    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py --quick    # no e5-small, no LLM, 1k scale
    .venv/bin/python bench/retrieval.py --latency-only --scale-dir /tmp/bench_latency   # stores kept for reruns
    .venv/bin/python bench/retrieval.py --no-llm --scale '' --sets data --systems 'saem hybrid,lc faiss' \
        --store-dir /tmp/bench_stores   # iterate: some sets / systems (to retrieval.partial.json), stores kept

Quality, per QA set of ``bench/qa.py`` (``seeds-dev`` and ``data``: small folders of notes;
``gimp-ko`` and ``pydoc-en``: the whole Korean GIMP manual and Python 3.11 docs, 685 and 530 HTML
pages) and per group (``ko``, ``en``, ``en→ko``, ``ko→en``): Recall@1/5/10, MRR@10, nDCG@10
(binary gains; the ideal ranking has every relevant chunk of the store). Relevance follows
``../shared/eval/README.md``: the hit's source is the item's page and it holds an evidence span, or
>= 60 % of one as one contiguous piece. Unanswerable items are left out of the metrics and used
for the threshold line (best cosine of answerable vs unanswerable questions).

Systems. saem, every folder ingested whole with the defaults (use-m; chunks of ``chunk_tokens``):
dense only (with and without ``neighbour_weight``), lexical only (FTS5 + Kiwi + stems), hybrid
(the default), hybrid with one lexical weight for every query (``cross_lingual_lexical_weight =
None``), hybrid with the previous defaults (lexical weight 1, cross-lingual 0), hybrid + embedder
rerank (use-m re-scoring the top ``rerank_candidates``); with ``--llm``, hybrid + the packaged
SmolLM2 as a pointwise reranker on the first 16 questions. The LangChain pipeline as a user
writes it: ``DirectoryLoader`` + ``BSHTMLLoader`` over ``**/*.html`` for the two HTML folders
(the notes' texts for the small sets), ``RecursiveCharacterTextSplitter(1000, 200)``,
``BM25Retriever`` (rank-bm25), FAISS with MiniLM, and ``EnsembleRetriever`` (BM25 + FAISS,
0.5/0.5). Not with ``--quick``: FAISS and the ensemble with multilingual-e5-small, and saem's
dense and hybrid on an e5-small store; e5-small embeds ≈ 5 passages a second, so on the two
HTML folders both sides index the same subset of ``--e5-pages`` pages (every QA source page,
then a seeded sample of the others), labelled "(subset)", with saem's default hybrid on that
subset beside them.

Latency: p50/p95 of ``HybridSearcher.search`` (k=10) per saem system on the QA questions, and at
growing store sizes (1k/10k/100k chunks) built from the Debian GIMP Korean help and Python HTML
docs (the 100k store repeats the corpus in copied folders, which ingest reuses without
re-embedding). Prints tables; writes ``bench/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
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

from embedders import read_document  # noqa: E402
from qa import GROUPS, QASet, group_of, judge, load_sets, source_matches  # noqa: E402

RESULTS = REPO / "bench" / "results" / "retrieval.json"
SCALE_SOURCES = (Path("/usr/share/gimp/2.0/help/ko"), Path("/usr/share/doc/python3.11/html"))

Hit = tuple[str, str]  # (source path, text)
Search = Callable[[str], list[Hit]]  # question -> the top 10, best first


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


def evaluate(search: Search, items: list[dict[str, Any]], all_chunks: list[Hit]) -> dict[str, Any]:
    per_group: dict[str, list[dict[str, float]]] = {g: [] for g in GROUPS}
    times: list[float] = []
    for item in items:
        t0 = time.perf_counter()
        hits = search(item["question"])
        times.append(time.perf_counter() - t0)
        flags = [judge(item, src, text) for src, text in hits[:10]]
        n_rel = sum(judge(item, src, text) for src, text in all_chunks if source_matches(item, src))
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


def subset_pages(qa: QASet, n: int) -> list[Path]:
    """Every page a QA item cites, then a seeded sample of the others, ``n`` pages in all."""
    pages = sorted(p for p in qa.folder.rglob("*.html") if "_sources" not in p.parts)
    cited = {s for i in qa.items for s in (i.get("sources") or ([i["source"]] if i.get("source") else []))}
    wanted = [p for p in pages if p.relative_to(qa.folder).as_posix() in cited]
    rest = [p for p in pages if p not in set(wanted)]
    random.Random(0).shuffle(rest)
    return sorted(wanted + rest[: max(0, n - len(wanted))])


def copy_pages(qa: QASet, pages: list[Path], dest: Path) -> Path:
    for p in pages:
        target = dest / p.relative_to(qa.folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copy(p, target)
    return dest


# --- saem ----------------------------------------------------------------------------------


INGESTS: dict[str, dict[str, Any]] = {}  # store name -> what its ingest took (this run)


def uncached(app: Any) -> Any:
    """``app`` with its embedder's query cache off: the systems share one embedder and ask the
    same questions, so a cache would time only the first system's query encodes."""
    from saem.models.embedders import QueryCache

    if hasattr(app.embedder, "query_cache"):
        app.embedder.query_cache = QueryCache(0)
    return app


def saem_store(work: Path, name: str, folder: Path, embed_model: str) -> Any:
    """``folder`` ingested into ``work/<name>-<embedder>`` (kept and reused with ``--store-dir``)."""
    from saem.app.saem import Saem

    store = f"{name}-{embed_model.split(':')[-1]}"
    app = uncached(Saem(data_dir=work / store, embed_model=embed_model))
    t0 = time.perf_counter()
    report = app.ingest(folder)
    seconds = time.perf_counter() - t0
    chunks = app.stats().chunks
    embedded = report.chunks_embedded
    INGESTS[store] = {"embed_model": embed_model, "chunks": chunks, "chunks_embedded": embedded,
                      "seconds": seconds, "chunks_per_s": embedded / seconds if seconds else None}  # fmt: skip
    print(f"{name}: {chunks} chunks with {embed_model} ({embedded} embedded, {seconds:.0f} s)", flush=True)
    return app


def chunk_hits(app: Any) -> list[Hit]:
    import sqlite3

    with sqlite3.connect(app.settings.db_path) as conn:
        sql = "SELECT s.path, c.text FROM chunks c JOIN sources s ON s.id = c.source_id ORDER BY c.id"
        return [(r[0], r[1]) for r in conn.execute(sql)]


def saem_systems(app: Any, llm: Any) -> dict[str, tuple[Any, int | None]]:
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
        "saem hybrid, one weight": (make(cross_lingual_lexical_weight=None), None),
        "saem hybrid, previous weights": (make(lexical_weight=1.0, cross_lingual_lexical_weight=0.0), None),
        "saem hybrid+embedder": (make(EmbedderReranker(app.embedder), rerank_candidates=20), None),
    }
    if llm is not None:
        systems["saem hybrid (LLM subset)"] = (make(), 16)
        systems["saem hybrid+llm (subset)"] = (make(LlmReranker(llm, max_chars=300), rerank_candidates=5), 16)
    return systems


def saem_e5_systems(app: Any, label: str) -> dict[str, tuple[Any, int | None]]:
    """The e5-small store's systems (no lexical-only one: BM25 does not use the embedder)."""
    from saem.retrieval.hybrid import HybridConfig, HybridSearcher

    def make(**cfg: Any) -> Any:
        return HybridSearcher(app.settings.data_dir, app.embedder, config=HybridConfig(**cfg))

    return {f"saem dense, e5-small{label}": (make(lexical_weight=0.0), None),
            f"saem hybrid, e5-small{label}": (make(), None)}  # fmt: skip


def _hits_of(searcher: Any) -> Search:
    return lambda q: [(h.source, h.text) for h in searcher.search(q, k=10).hits]


# --- LangChain baseline --------------------------------------------------------------------


def langchain_documents(qa: QASet, folder: Path) -> list[Any]:
    """What a LangChain user loads: every HTML page of an HTML folder (BSHTMLLoader), or the notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.document_loaders import BSHTMLLoader, DirectoryLoader
        from langchain_core.documents import Document

    if not qa.real:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "qa.jsonl")
        return [Document(read_document(p), metadata={"source": str(p)}) for p in files]
    loader = DirectoryLoader(
        str(folder),
        glob="**/*.html",
        loader_cls=BSHTMLLoader,
        loader_kwargs={"open_encoding": "utf-8", "bs_kwargs": {"features": "html.parser"}},
        silent_errors=True,
    )
    return loader.load()


def langchain_systems(docs: list[Any], embedders: dict[str, Any]) -> tuple[dict[str, Search], list[Hit], float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_classic.retrievers import EnsembleRetriever
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS
        from langchain_text_splitters import RecursiveCharacterTextSplitter

    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    hits = [(str(c.metadata.get("source", "")), c.page_content) for c in chunks]
    bm25 = BM25Retriever.from_documents(chunks, k=10)

    def run(retriever: Any) -> Search:
        return lambda q: [(str(d.metadata.get("source", "")), d.page_content) for d in retriever.invoke(q)][:10]

    systems: dict[str, Search] = {"lc bm25": run(bm25)}
    for name, emb in embedders.items():
        t0 = time.perf_counter()
        store = FAISS.from_documents(chunks, emb)
        print(f"  langchain FAISS with {name}: {len(chunks)} chunks in {time.perf_counter() - t0:.0f} s", flush=True)
        dense = store.as_retriever(search_kwargs={"k": 10})
        systems[f"lc faiss-{name}"] = run(dense)
        systems[f"lc ensemble-{name}"] = run(EnsembleRetriever(retrievers=[bm25, dense], weights=[0.5, 0.5]))
    return systems, hits, sum(len(t) for _, t in hits) / max(1, len(hits))


# --- latency at scale ----------------------------------------------------------------------


def save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


def scale_store(root: Path, size: int, embed_model: str = "packaged:static-m") -> tuple[Any, float]:
    """A store of at least ``size`` chunks in ``root/<size>`` (reused when already built)."""
    from saem.app.saem import Saem

    files = [(src, p) for src in SCALE_SOURCES if src.is_dir() for p in sorted(src.rglob("*.html"))]
    app = uncached(Saem(data_dir=root / str(size) / "saem", embed_model=embed_model))
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


_METRICS = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")


def _cells(r: dict[str, Any], groups: list[str], keys: tuple[str, ...]) -> list[str]:
    return [" / ".join(f"{r[g][k]:.2f}" for k in keys) if g in r else "–" for g in groups]


def markdown_tables(results: dict[str, Any], keys: tuple[str, ...] = ("R@5", "MRR@10")) -> str:
    """The README's retrieval tables: every system and group, ``keys`` per cell, chunk size."""
    out = []
    m = results.get("machine", {})
    out.append(f"Measured {results.get('when', '?')[:10]} on {m.get('cpus', '?')} cores ({m.get('cpu', '?')}), "
               f"{m.get('memory_gib', '?')} GiB, Python {m.get('python', '?')}.")  # fmt: skip
    for set_name, res in results.get("quality", {}).items():
        groups = [g for g in GROUPS if any(g in r for r in res["systems"].values())]
        counts = {g: max(r[g]["n"] for r in res["systems"].values() if g in r) for g in groups}
        out.append("")
        out.append(f"**{set_name}** — {' / '.join(keys)} per group (n questions)")
        out.append("")
        head = ["system", "chunk chars"] + [f"{g} ({counts[g]})" for g in groups]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for name, r in res["systems"].items():
            label = f"**{name}**" if name == "saem hybrid" else name
            chars = res["chunk_chars"].get(name, 0.0)
            out.append(f"| {label} | {chars:.0f} | " + " | ".join(_cells(r, groups, keys)) + " |")
    if results.get("scale"):
        out.append("")
        out.append("| embedder | chunks | hybrid p50 / p95 ms | hybrid + embedder rerank p50 / p95 ms |")
        out.append("|---|---|---|---|")
        for row in results["scale"]:
            h, e = row["hybrid"], row.get("hybrid+embedder", {})
            rerank = f"{e.get('p50_ms', 0):.0f} / {e.get('p95_ms', 0):.0f}"
            out.append(f"| {row.get('embed_model', 'packaged:static-m')} | {row['chunks']:,} | "
                       f"{h['p50_ms']:.0f} / {h['p95_ms']:.0f} | {rerank} |")  # fmt: skip
    return "\n".join(out)


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=220)
    for set_name, res in results["quality"].items():
        groups = [g for g in GROUPS if any(g in r for r in res["systems"].values())]
        table = Table(title=f"{set_name}: R@1 / R@5 / R@10 / MRR@10 / nDCG@10 (answerable questions)")
        table.add_column("system")
        table.add_column("chunk chars", justify="right")
        for g in groups:
            n = max(r[g]["n"] for r in res["systems"].values() if g in r)
            table.add_column(f"{g} (n={n})", justify="right")
        table.add_column("p50/p95 ms", justify="right")
        for name, r in res["systems"].items():
            lat = r["latency_ms"]
            chars = res["chunk_chars"].get(name, 0.0)
            table.add_row(name, f"{chars:.0f}", *_cells(r, groups, _METRICS), f"{lat['p50']:.0f} / {lat['p95']:.0f}")
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
            h, e = row["hybrid"], row.get("hybrid+embedder", {})
            table.add_row(row.get("embed_model", "packaged:static-m"), str(row["chunks"]), f"{row['build_s']:.0f}",
                          f"{h['p50_ms']:.0f} / {h['p95_ms']:.0f}",
                          f"{e.get('p50_ms', 0):.0f} / {e.get('p95_ms', 0):.0f}")  # fmt: skip
        console.print(table)


def run_set(qa: QASet, args: argparse.Namespace, work: Path, llm: Any, embedders: dict[str, Any],
            selected: Callable[[str], bool], best: dict[str, list[float]]) -> dict[str, Any]:  # fmt: skip
    """Every selected system on one QA set: ``{"systems": {name: metrics}, "chunk_chars": {name: mean}}``."""
    entry: dict[str, Any] = {"systems": {}, "chunk_chars": {}, "chunks": {}}
    items = qa.answerable

    def record(name: str, search: Search, chunks: list[Hit], subset: list[dict[str, Any]] | None = None) -> None:
        entry["systems"][name] = evaluate(search, subset if subset is not None else items, chunks)
        entry["chunk_chars"][name] = sum(len(t) for _, t in chunks) / max(1, len(chunks))
        entry["chunks"][name] = len(chunks)
        print(f"{qa.name} {name}: {entry['systems'][name]['all']}", flush=True)

    app = saem_store(work, qa.name, qa.folder, "packaged:use-m")
    chunks = chunk_hits(app)
    for name, (searcher, limit) in saem_systems(app, llm).items():
        if selected(name) or name == "saem hybrid":
            search = _hits_of(searcher)
            search("warm up")
            record(name, search, chunks, items[:limit] if limit else None)
    hybrid = saem_systems(app, None)["saem hybrid"][0]
    for item in qa.items:  # the best cosine of answerable and unanswerable questions
        hits = hybrid.search(item["question"], k=5).hits
        best["unanswerable" if item.get("kind") == "unanswerable" else "answerable"].append(
            max((h.cosine for h in hits), default=0.0)
        )
    lc_docs = langchain_documents(qa, qa.folder) if any(selected(n) for n in ("lc bm25", "lc faiss", "lc ens")) else []
    if lc_docs:
        lc, lc_chunks, _ = langchain_systems(lc_docs, {k: v for k, v in embedders.items() if k != "e5-small"})
        for name, search in lc.items():
            if selected(name):
                record(name, search, lc_chunks)
    if not args.quick and selected("static-m"):  # the fast embedder, on the whole folder
        st_app = saem_store(work, qa.name, qa.folder, "packaged:static-m")
        st_chunks = chunk_hits(st_app)
        for name, (searcher, _) in saem_e5_systems(st_app, "").items():
            record(name.replace("e5-small", "static-m"), _hits_of(searcher), st_chunks)
    if "e5-small" in embedders and any(selected(n) for n in ("e5-small", "subset")):
        folder, label = qa.folder, ""
        store = qa.name
        if qa.real:  # e5-small is slow: both sides index the same subset of pages
            sizes = dict(kv.split("=", 1) for kv in args.e5_pages.split(",") if "=" in kv)
            n_pages = int(sizes.get(qa.name, 150))
            pages = subset_pages(qa, n_pages)
            store = f"{qa.name}-subset-{n_pages}"
            folder = copy_pages(qa, pages, work / f"{store}-docs")
            label = f" ({len(pages)}-page subset)"
            sub_app = saem_store(work, store, folder, "packaged:use-m")
            record(f"saem hybrid{label}", _hits_of(saem_systems(sub_app, None)["saem hybrid"][0]), chunk_hits(sub_app))
        e5_app = saem_store(work, store, folder, "packaged:e5-small")
        e5_chunks = chunk_hits(e5_app)
        for name, (searcher, _) in saem_e5_systems(e5_app, label).items():
            record(name, _hits_of(searcher), e5_chunks)
        lc, lc_chunks, _ = langchain_systems(langchain_documents(qa, folder), {"e5-small": embedders["e5-small"]})
        for name, search in lc.items():
            if name != "lc bm25" or qa.real:
                record(name + label if name != "lc bm25" else f"lc bm25{label}", search, lc_chunks)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="no e5-small and no LLM reranker; 1k scale only")
    parser.add_argument("--llm", action="store_true", help="also the SmolLM2 pointwise reranker (slow: 16 questions)")
    parser.add_argument(
        "--e5-pages",
        default="gimp-ko=150,pydoc-en=90",
        help="pages of each HTML folder e5-small indexes (every QA source page, then a seeded sample)",
    )
    parser.add_argument("--scale", default=None, help="store sizes for latency, e.g. 1000,10000,100000 ('' = none)")
    parser.add_argument("--latency-only", action="store_true", help="only the latency-vs-store-size part")
    parser.add_argument("--scale-dir", type=Path, default=None, help="keep the scale stores here, reuse them")
    parser.add_argument(
        "--scale-embedder",
        default="packaged:use-m",
        help="embedder of the scale stores (packaged:use-m, the default; static-m is faster to build)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print README tables from the results JSON (--out) and exit"
    )
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sets", default=None, help="QA sets, comma-separated (seeds-dev,data,gimp-ko,pydoc-en)")
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
    if (args.systems is not None or args.sets is not None) and args.out == RESULTS:
        args.out = RESULTS.with_name("retrieval.partial.json")  # a partial run must not overwrite the full results
    scale = args.scale if args.scale is not None else ("1000" if args.quick else "1000,10000,100000")
    sizes = [int(s) for s in scale.split(",") if s]
    if args.latency_only:
        return latency_only(args, sizes)
    work = args.store_dir or Path(tempfile.mkdtemp(prefix="saem-bench-retrieval-"))
    set_names = {s.strip() for s in args.sets.split(",")} if args.sets else None
    sets = load_sets(args.data, set_names, work=work)
    if not sets:
        print("error: no QA set found (see bench/qa.py)", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(1)  # measured faster than 2 on this shared 2-core machine
    from saem.models.embedders import SentenceTransformerEmbeddings
    from saem.models.registry import resolve

    embedders = {"minilm": SentenceTransformerEmbeddings(resolve("packaged:minilm", "embed"))}
    if not args.quick:
        embedders["e5-small"] = SentenceTransformerEmbeddings(resolve("packaged:e5-small", "embed"))
    llm = None
    if args.llm and not args.quick:
        from saem.models.llamacpp import LlamaCppChatModel

        llm = LlamaCppChatModel(n_ctx=2048)
    wanted = [w.strip() for w in args.systems.split(",")] if args.systems else None

    def selected(name: str) -> bool:
        return wanted is None or any(w in name for w in wanted)

    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(),
                               "quick": args.quick, "quality": {}}  # fmt: skip
    best: dict[str, list[float]] = {"answerable": [], "unanswerable": []}
    try:
        for qa in sets:
            results["quality"][qa.name] = run_set(qa, args, work, llm, embedders, selected, best)
            results["ingests"] = INGESTS
            save(args.out, results)
        ans = sorted(best["answerable"])
        if best["unanswerable"]:
            results["threshold"] = {"answerable_min": ans[0], "answerable_median": ans[len(ans) // 2],
                                    "unanswerable_max": max(best["unanswerable"]),
                                    "n_unanswerable": len(best["unanswerable"])}  # fmt: skip
        if not sizes and args.out.is_file():  # no scale part this time: keep the last run's rows
            previous = json.loads(args.out.read_text(encoding="utf-8"))
            results.update({key: previous[key] for key in ("scale", "scale_when") if key in previous})
        save(args.out, results)  # quality is kept even if the scale part is cut short
        if sizes:
            questions = [i["question"] for qa in sets for i in qa.items]
            results["scale"] = []
            results["scale_when"] = results["when"]

            def keep(row: dict[str, Any]) -> None:
                results["scale"].append(row)
                save(args.out, results)

            scale_latency(args.scale_dir or work / "scale", sizes, questions, keep, embed_model=args.scale_embedder)
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
    questions = [i["question"] for qa in load_sets(args.data) for i in qa.items]
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
