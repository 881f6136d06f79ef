"""Answer quality and latency per answer mode (generate / extractive / hybrid) on the four QA sets.

    .venv/bin/python bench/answers.py --generate-limit 14   # every question extractively, 14 a set generated
    .venv/bin/python bench/answers.py --limit 10 --modes extractive,hybrid --sets seeds-dev,data
    SAEM_CHAT_MODEL=/models/qwen2.5-1.5b-instruct-q4_k_m.gguf .venv/bin/python bench/answers.py

Sets: the four of ``bench/qa.py`` (``seeds-dev``, ``data``, and the whole GIMP manual and Python
docs folders, ``gimp-ko`` and ``pydoc-en``). Each folder is ingested once into ``--work``
(incremental on reruns). Every
question is asked through ``Saem.ask`` in a fresh session, exactly as a user would, with
temperature 0 and the chat model from the settings (the packaged SmolLM2 by default).

Per mode: containment of a gold answer, token F1 (Korean-aware tokens, best over gold answers),
language match (the answer is in the question's language), citation grounding (answers citing
anything whose cited chunks hold a gold evidence span), abstention accuracy on the unanswerable
items (an answer abstains when the chain says so or its text declines), the hybrid fallback rate,
and latency p50 / p95 per question. Metrics come from ``saem.evaluation.metrics``, the same code
the RAG-vs-LoRA report uses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qa import load_sets  # noqa: E402

from saem import Saem
from saem.app.language import language_matches
from saem.evaluation.metrics import citation_grounding, contains_answer, is_abstention, token_f1

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "answers.json"
MODES = ("generate", "extractive", "hybrid")


def load_items(items: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    if limit is None or limit >= len(items):
        return items
    # keep the unanswerable items in a short run: they are what abstention is scored on
    unanswerable = [i for i in items if not i.get("answers")]
    answerable = [i for i in items if i.get("answers")]
    keep = answerable[: max(1, limit - len(unanswerable))] + unanswerable
    return keep[:limit]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


RUN = uuid.uuid4().hex[:8]


def ask_all(saem: Saem, items: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    rows = []
    for n, item in enumerate(items, 1):
        started = time.perf_counter()
        # a user of its own per question and run: the work dir is kept between runs (its index is
        # reused), and memories written by earlier questions or runs must not reach this answer
        user = f"bench-{RUN}-{item['id']}"
        answer: Any = saem.ask(item["question"], session_id=f"{user}-{mode}", user_id=user)
        seconds = time.perf_counter() - started
        by_n = {s.n: s.text for s in answer.sources}
        cited = sorted({c.n for c in answer.citations if c.status != "invalid" and c.n in by_n})
        rows.append({
            "id": item["id"],
            "lang": item.get("lang"),
            "kind": item.get("kind"),
            "answerable": bool(item.get("answers")),
            "answer": answer.text,
            "abstained": bool(answer.abstained) or is_abstention(answer.text),
            "cited_texts": [by_n[c] for c in cited],
            "fallback": any(m in x for x in answer.notices for m in ("quoted from the documents", "문서에서 인용한")),
            "notices": list(answer.notices),
            "seconds": seconds,
        })  # fmt: skip
        print(f"  {mode:10s} {n:3d}/{len(items)} {seconds:6.1f}s {item['id']}", flush=True)
    return rows


def score(rows: list[dict[str, Any]], items: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [(r, i) for r, i in zip(rows, items, strict=True) if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    grounding = citation_grounding([r["cited_texts"] for r in rows], items)
    seconds = [r["seconds"] for r in rows]
    return {
        "n": len(rows),
        "containment": statistics.fmean(contains_answer(r["answer"], i["answers"]) for r, i in answerable),
        "token_f1": statistics.fmean(token_f1(r["answer"], i["answers"]) for r, i in answerable),
        "language_match": statistics.fmean(
            language_matches(r["answer"], "ko" if i.get("lang") == "ko" else "en") for r, i in answerable
        ),
        "grounding": grounding.rate,
        "cited_rate": grounding.cited_rate,
        "abstention_on_unanswerable": (
            statistics.fmean(r["abstained"] for r in unanswerable) if unanswerable else None
        ),
        "false_abstention": statistics.fmean(r["abstained"] for r, _ in answerable),
        "fallback_rate": statistics.fmean(r["fallback"] for r in rows),
        "p50_s": percentile(seconds, 0.5),
        "p95_s": percentile(seconds, 0.95),
    }


def fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated answer modes")
    parser.add_argument("--sets", default=None, help="comma-separated QA sets (seeds-dev,data,gimp-ko,pydoc-en)")
    parser.add_argument("--limit", type=int, default=None, help="questions per set (unanswerable ones kept)")
    parser.add_argument(
        "--generate-limit", type=int, default=None, help="questions per set for the modes that generate (slow)"
    )
    parser.add_argument("--max-tokens", type=int, default=256, help="answer tokens (default 256)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/saem-bench-answers"), help="data dirs go here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    names = {x for x in args.sets.split(",") if x} if args.sets else None
    sets = load_sets(ROOT / "data", names, work=args.work)
    if not sets:
        parser.error("no QA set found (see bench/qa.py)")

    results: dict[str, Any] = {}
    table: list[tuple[str, str, dict[str, Any]]] = []
    for qa in sets:
        overrides = {"data_dir": str(args.work / qa.name), "temperature": 0.0, "max_tokens": args.max_tokens}
        Saem(**overrides).ingest(qa.folder, exclude=["*.jsonl"])
        results[qa.name] = {}
        for mode in modes:
            limit = args.generate_limit if mode != "extractive" and args.generate_limit is not None else args.limit
            items = load_items(qa.items, limit)
            saem = Saem(**overrides, answer_mode=mode)
            print(f"{qa.name} / {mode}: {len(items)} questions", flush=True)
            rows = ask_all(saem, items, mode)
            summary = score(rows, items)
            results[qa.name][mode] = {"summary": summary, "rows": rows}
            table.append((qa.name, mode, summary))

    model = os.environ.get("SAEM_CHAT_MODEL", "packaged:smollm2")
    header = ("| set | mode | containment | token F1 | language match | grounding (cited) | "
              "abstains on unanswerable | false abstention | fallback | p50 / p95 s |")  # fmt: skip
    print(f"\nchat model {model}, temperature 0, max_tokens {args.max_tokens}\n")
    print(header)
    print("|" + "---|" * 10)
    for name, mode, s in table:
        print(f"| {name} | {mode} | {fmt(s['containment'])} | {fmt(s['token_f1'])} | {fmt(s['language_match'])} | "
              f"{fmt(s['grounding'])} ({fmt(s['cited_rate'])}) | {fmt(s['abstention_on_unanswerable'])} | "
              f"{fmt(s['false_abstention'])} | {fmt(s['fallback_rate'])} | "
              f"{s['p50_s']:.1f} / {s['p95_s']:.1f} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "chat_model": model,
        "max_tokens": args.max_tokens,
        "limit": args.limit,
        "results": results,
    }
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
