"""Router mode on real GGUFs: routing accuracy over 10 scripted tasks, and latency per step.

    .venv/bin/python bench/agents.py                     # the packaged SmolLM2; table + bench/results/agents.json
    SAEM_CHAT_MODEL=/models/qwen2.5-1.5b-instruct-q4_k_m.gguf .venv/bin/python bench/agents.py
    .venv/bin/python bench/agents.py --threads 2 --repeats 2

Each task has an expected action (answer_directly / search_documents / use_tool + tool name).
Accuracy = the router's choice matches it (the tool's arguments are not judged). The tools are
real (calculator, current_time with a fixed clock, search_documents over a fake two-document
retriever), so every step does what it would in the product. Latency is reported per step —
route (the grammar-constrained choice), tool, answer — as the median over tasks and repeats.
With ``SAEM_CHAT_MODEL`` set to a GGUF path, that model is measured after the packaged one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from saem.agents.builtin import builtin_tools
from saem.agents.registry import ToolRegistry
from saem.agents.router import Router
from saem.agents.types import AgentResult

RESULTS = Path(__file__).resolve().parent / "results" / "agents.json"

DOCS = [
    Document(
        "The saem default context window is 4096 tokens; the answer reserve is 512 tokens.",
        metadata={"source": "guide.md", "start": 0, "end": 83, "heading": "Context"},
    ),
    Document(
        "For the LoRA run we used rank 16, alpha 32 and a learning rate of 2e-4.",
        metadata={"source": "notes/lora.md", "start": 120, "end": 191, "heading": "Training"},
    ),
]


@dataclass(frozen=True)
class Task:
    question: str
    action: str  # answer_directly | search_documents | use_tool
    tool: str | None = None


TASKS = [
    Task("What is 345 * 12?", "use_tool", "calculator"),
    Task("Compute the square root of 1764.", "use_tool", "calculator"),
    Task("How much is 2 to the power of 20?", "use_tool", "calculator"),
    Task("What time is it right now?", "use_tool", "current_time"),
    Task("Which day of the week is it today?", "use_tool", "current_time"),
    Task("What does my guide say about the context window size?", "search_documents"),
    Task("In my notes, which LoRA rank did we use?", "search_documents"),
    Task("Find the learning rate in my training notes.", "search_documents"),
    Task("Hello! How are you today?", "answer_directly"),
    Task("Tell me a short joke about cats.", "answer_directly"),
]


def make_router(model: Any) -> Router:
    """A router over calculator, current_time (fixed clock) and search_documents (fake retriever)."""
    clock = lambda: datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # noqa: E731
    tools = builtin_tools(retrieve=lambda q, k: DOCS[:k], clock=clock)
    session = ToolRegistry(tools).session(allow=["search_documents", "calculator", "current_time"])
    return Router(model, session)


def correct(task: Task, result: AgentResult) -> bool:
    choice = result.choice or {}
    return choice.get("action") == task.action and (task.tool is None or choice.get("tool") == task.tool)


def run_tasks(router: Router, tasks: list[Task] = TASKS) -> list[dict[str, Any]]:
    """One row per task: question, expected, chosen, correct, tool status, seconds per step kind."""
    rows = []
    for task in tasks:
        result = router.run(task.question)
        seconds = {s.kind: s.seconds for s in result.steps}
        rows.append({
            "question": task.question,
            "expected": task.tool or task.action,
            "chosen": (result.choice or {}).get("tool") or (result.choice or {}).get("action") or "(invalid)",
            "correct": correct(task, result),
            "tool_status": result.tool_calls[0].status if result.tool_calls else "",
            "route_s": seconds.get("route", 0.0),
            "tool_s": seconds.get("tool", 0.0),
            "answer_s": seconds.get("model", 0.0),
            "answer": result.text[:120],
        })  # fmt: skip
    return rows


def measure(model_path: str | None, *, threads: int, repeats: int) -> dict[str, Any]:
    from saem.models.llamacpp import LlamaCppChatModel

    model = LlamaCppChatModel(model_path=model_path, temperature=0, max_tokens=160, n_threads=threads, n_ctx=4096)
    router = make_router(model)
    router.run("warm up")  # loads the GGUF; not measured
    rows: list[dict[str, Any]] = []
    for _ in range(repeats):
        rows += run_tasks(router)
    med = {k: statistics.median(r[k] for r in rows) for k in ("route_s", "tool_s", "answer_s")}
    return {
        "model": model.model_name,
        "accuracy": sum(r["correct"] for r in rows) / len(rows),
        "valid_choices": sum(r["chosen"] != "(invalid)" for r in rows) / len(rows),
        "median_route_s": med["route_s"],
        "median_tool_s": med["tool_s"],
        "median_answer_s": med["answer_s"],
        "rows": rows[: len(TASKS)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    models: list[str | None] = [None]
    extra = os.environ.get("SAEM_CHAT_MODEL")
    if extra and extra not in ("packaged:smollm2", ""):
        models.append(extra)
    results = [measure(m, threads=args.threads, repeats=args.repeats) for m in models]
    for res in results:
        print(f"\n{res['model']}: accuracy {res['accuracy']:.0%}, valid choices {res['valid_choices']:.0%}")
        print(
            f"{'question':<56} {'expected':<17} {'chosen':<17} {'ok':<3} {'route s':>8} {'tool s':>7} {'answer s':>9}"
        )
        for r in res["rows"]:
            print(
                f"{r['question'][:55]:<56} {r['expected']:<17} {r['chosen']:<17} {'✓' if r['correct'] else '✗':<3} "
                f"{r['route_s']:>8.2f} {r['tool_s']:>7.3f} {r['answer_s']:>9.2f}"
            )
        print(
            f"{'median':<96} {res['median_route_s']:>8.2f} {res['median_tool_s']:>7.3f} {res['median_answer_s']:>9.2f}"
        )
    payload = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "repeats": args.repeats,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
