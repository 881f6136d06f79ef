"""One chat turn, end to end: time to first token and total time, first turn vs fifth turn.

Ingests a copy of ``data/`` (without ``qa.jsonl``) with the packaged USE-m embedder, then runs
five-turn conversations (English and Korean, standalone questions, one session each) as
``Saem.stream`` runs them (``TurnDeps.build`` + ``run_turn``) with the packaged SmolLM2 at
temperature 0, and reports per turn: time to first token (from the start of the turn), total,
and the share of the turn spent in retrieval (and the reranker's part of it), context building
and generation, plus the prompt tokens the model had to evaluate (the rest came from the KV
cache of the previous turn's prefix). The embedder's query cache is cleared before each turn,
so every question is encoded once, as a new question in a real chat is.

    .venv/bin/python bench/chat.py                    # table on stdout, JSON in bench/results/chat.json
    .venv/bin/python bench/chat.py --repeats 3 --max-tokens 256

Targets (issue): context building ≤ 5 % of the turn; the fifth turn's time to first token no worse
than the first's (prefix reuse). Each conversation runs twice per repeat, the second time with its
first and last questions swapped, so turn 1 and turn 5 are medians over the same questions.

Three modes, one after the other on the same model: ``prefill_next_turn`` on with a ``--pause``
(default 3 s: a user reading the answer and typing the next question) before every turn, on with
no pause (the next question arrives the moment the answer is done, so the background prefill
is interrupted at once), and off (each turn reuses only the prefix its prompt shares with the
previous turn's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from saem.app.rag import RagStrategy
from saem.app.traces import TraceStore
from saem.app.turn import TurnDeps, run_turn
from saem.app.types import Answer
from saem.ingest.pipeline import ingest
from saem.memory.longterm import LongTermMemory
from saem.models.embedders import load_embedder
from saem.models.llamacpp import LlamaCppChatModel
from saem.retrieval.hybrid import HybridConfig, HybridSearcher
from saem.settings import Settings
from saem.store.chat import MemoryDB

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "chat.json"

CONVERSATIONS = {
    "en": [
        "What does top-p sampling control?",
        "How does temperature change the token distribution?",
        "What is a chat template used for?",
        "Which metrics does RAG evaluation use?",
        "What do embeddings represent?",
    ],
    "ko": [
        "LoRA 파인튜닝에서 랭크 r은 무엇을 정하나요?",
        "양자화는 모델 크기를 어떻게 줄이나요?",
        "토크나이저는 한국어를 어떻게 나누나요?",
        "문맥 창이 길면 어떤 문제가 있나요?",
        "어텐션은 무엇을 계산하나요?",
    ],
}


def _turn(deps: TurnDeps, question: str, session: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    ttft = None
    answer: Answer | None = None
    inp = {"question": question, "session_id": session, "user_id": "bench"}
    for piece in run_turn(deps, RagStrategy(deps), inp):
        if isinstance(piece, str):
            if ttft is None and piece.strip():
                ttft = time.perf_counter() - t0
        else:
            answer = piece
    total = time.perf_counter() - t0
    assert answer is not None
    trace = deps.traces.get(answer.trace_id)
    assert trace is not None
    t = trace.timings
    call = next((c for c in trace.model_calls if c.get("kind") == "answer"), {})
    return {
        "ttft": ttft if ttft is not None else total,
        "total": total,
        "retrieve": t.get("retrieve", 0.0),
        "rerank": t.get("retrieve.rerank", 0.0),
        "context": t.get("context", 0.0),
        "condense": t.get("condense", 0.0),
        "generate": t.get("generate", 0.0),
        "prompt_tokens": int(call.get("prompt_tokens", 0)),
        "cached_tokens": int(call.get("cached_tokens", 0)),
        "completion_tokens": int(call.get("completion_tokens", 0)),
        "dropped": len(answer.budget.dropped) if answer.budget else 0,
        "citations": len(answer.citations),
        "retried": any(c.get("kind") == "retry" for c in trace.model_calls),
    }


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


MODES = {
    # name: (prefill_next_turn, pause before each turn in seconds; None = --pause)
    "prefill+pause": (True, None),
    "prefill+no-pause": (True, 0.0),
    "no-prefill": (False, None),
}


def _summarise(
    rows: dict[str, dict[int, list[dict[str, Any]]]], last_turn: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    turns: dict[str, Any] = {}
    for lang, by_turn in rows.items():
        for turn in sorted(by_turn):
            runs = by_turn[turn]
            total = _median(runs, "total")
            entry: dict[str, Any] = {
                k: round(_median(runs, k), 4)
                for k in (
                    "ttft",
                    "total",
                    "retrieve",
                    "rerank",
                    "context",
                    "condense",
                    "generate",
                    "prompt_tokens",
                    "cached_tokens",
                    "completion_tokens",
                )
            }
            entry["share"] = {
                k: round(_median(runs, k) / total, 4) for k in ("retrieve", "rerank", "context", "generate")
            }
            entry["evaluated_tokens"] = entry["prompt_tokens"] - entry["cached_tokens"]
            entry["runs"] = runs
            turns.setdefault(lang, {})[str(turn)] = entry
    checks = {}
    for lang, by_turn in turns.items():
        first, last = by_turn["1"], by_turn[str(last_turn)]
        worst_context = max(t["share"]["context"] for t in by_turn.values())
        checks[lang] = {
            "context_share_max": worst_context,
            "context_target_met": worst_context <= 0.05,
            "ttft_first": first["ttft"],
            "ttft_last": last["ttft"],
            "ttft_target_met": last["ttft"] <= first["ttft"],
            "evaluated_tokens_first": first["evaluated_tokens"],
            "evaluated_tokens_last": last["evaluated_tokens"],
        }
    return turns, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each conversation (each in two orders)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument(
        "--pause", type=float, default=3.0, help="seconds a user takes to read an answer and type the next question"
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of: {', '.join(MODES)}")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; pick from {list(MODES)}")

    work = Path(tempfile.mkdtemp(prefix="saem-bench-chat-"))
    try:
        docs = work / "docs"
        shutil.copytree(ROOT / "data", docs, ignore=shutil.ignore_patterns("qa.jsonl"))
        base = {
            "data_dir": str(work / "data"),
            "n_ctx": args.n_ctx,
            "max_tokens": args.max_tokens,
            "n_threads": args.threads,
            "temperature": 0.0,
            # the turn with generation: auto would answer extractively for the packaged model
            "answer_mode": "generate",
        }
        settings = Settings.load(base, environ={})
        embedder = load_embedder(settings)
        report = ingest(settings, [docs], embedder=embedder)
        searcher = HybridSearcher(settings.data_dir, embedder, config=HybridConfig.from_settings(settings))
        model = LlamaCppChatModel.from_settings(settings)
        t = time.perf_counter()
        model.count_tokens([("user", "warm up")])  # loads the GGUF
        embedder.embed_query("warm up")
        searcher.search("warm up", k=1)
        warm = time.perf_counter() - t

        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "settings": {
                "n_ctx": args.n_ctx,
                "max_tokens": args.max_tokens,
                "n_threads": args.threads,
                "retrieve_k": settings.retrieve_k,
                "repeats": args.repeats,
                "pause": args.pause,
                "chat_model": settings.chat_model,
                "embed_model": settings.embed_model,
                "rerank": "none",
            },
            "chunks": report.chunks_written,
            "warm_up_seconds": round(warm, 2),
            "modes": {},
        }
        header = ("mode", "conversation", "turn", "TTFT s", "total s", "retrieval %", "context %", "generation %",
                  "prompt tok", "evaluated tok", "answer tok")  # fmt: skip
        table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for mode in modes:
            prefill, pause = MODES[mode]
            pause = args.pause if pause is None else pause
            db = MemoryDB.open(settings.db_path)
            deps = TurnDeps.build(
                Settings.load({**base, "prefill_next_turn": prefill}, environ={}),
                model,
                searcher,
                db,
                LongTermMemory(db, embedder),
                TraceStore(db),
            )
            rows: dict[str, dict[int, list[dict[str, Any]]]] = {}
            for rep in range(args.repeats):
                for lang, questions in CONVERSATIONS.items():
                    qs = questions[: args.turns]
                    # each conversation also runs with its first and last question swapped, so turn 1 and
                    # the last turn are measured on the same set of questions (only the position differs)
                    for order, seq in enumerate((qs, [qs[-1], *qs[1:-1], qs[0]])):
                        session = f"{mode}-{lang}-{rep}-{order}"
                        for turn, q in enumerate(seq, 1):
                            time.sleep(pause)
                            embedder.query_cache.clear()  # each question new to the embedder, as in a real chat
                            rows.setdefault(lang, {}).setdefault(turn, []).append(_turn(deps, q, session))
            turns, checks = _summarise(rows, args.turns)
            results["modes"][mode] = {"prefill_next_turn": prefill, "pause": pause, "turns": turns, "targets": checks}
            for lang, by_turn in turns.items():
                for turn in (1, args.turns):
                    e = by_turn[str(turn)]
                    s_ = e["share"]
                    table.append(
                        f"| {mode} | {lang} | {turn} | {e['ttft']:.2f} | {e['total']:.2f} | "
                        f"{100 * s_['retrieve']:.1f} | {100 * s_['context']:.2f} | {100 * s_['generate']:.1f} | "
                        f"{e['prompt_tokens']:.0f} | {e['evaluated_tokens']:.0f} | {e['completion_tokens']:.0f} |"
                    )
            print(f"{mode}: done", flush=True)
        print("\n".join(table))
        print()
        for mode, entry in results["modes"].items():
            for lang, c in entry["targets"].items():
                print(
                    f"{mode}, {lang}: context ≤ 5 % of every turn: {c['context_target_met']} "
                    f"(max {100 * c['context_share_max']:.2f} %); turn {args.turns} TTFT {c['ttft_last']:.2f} s "
                    f"vs turn 1 {c['ttft_first']:.2f} s: {c['ttft_target_met']}"
                )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
