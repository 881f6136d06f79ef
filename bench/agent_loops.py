"""The tool-calling loop two ways: saem's own AgentLoop and LangChainAgentLoop (create_agent).

    .venv/bin/python bench/agent_loops.py            # table + bench/results/agent_loops.json
    .venv/bin/python bench/agent_loops.py --repeats 3

Two measurements, both loops in the same run:

1. **Overhead** with a scripted model (no inference): a 3-step run (two tool calls, then the
   answer), 50 runs each; what the loop itself costs per run.
2. **The packaged SmolLM2** in loop mode over bench/agents.py's 10 tasks: whether the first tool
   called is the expected one (answer_directly: no tool), steps, tool calls, stop reason and
   seconds per run. Both loops see the same prompts, so their choices should match; a
   difference would be a behaviour change, not noise (temperature 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agents import DOCS, TASKS, Task  # noqa: E402  (bench/agents.py)

from saem.agents.builtin import builtin_tools  # noqa: E402
from saem.agents.lc_agent import LangChainAgentLoop  # noqa: E402
from saem.agents.loop import AgentLoop  # noqa: E402
from saem.agents.registry import ToolRegistry  # noqa: E402
from saem.agents.types import AgentResult  # noqa: E402
from saem.testing import ScriptedChatModel, tool_call  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "agent_loops.json"
LOOPS: dict[str, Any] = {"saem AgentLoop": AgentLoop, "LangChain create_agent": LangChainAgentLoop}


def session() -> Any:
    from datetime import UTC, datetime

    clock = lambda: datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # noqa: E731
    tools = builtin_tools(retrieve=lambda q, k: DOCS[:k], clock=clock)
    return ToolRegistry(tools).session(allow=["search_documents", "calculator", "current_time"])


def overhead(cls: Any, runs: int = 50) -> dict[str, float]:
    script = []
    for i in range(runs + 1):
        script += [
            tool_call("calculator", {"expression": "1+1"}, call_id=f"a{i}"),
            tool_call("calculator", {"expression": "2+2"}, call_id=f"b{i}"),
            "done",
        ]
    loop = cls(ScriptedChatModel(script=script), session())
    loop.run("warm up")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = loop.run("q")
        times.append(time.perf_counter() - started)
        assert result.text == "done" and len(result.tool_calls) == 2
    times.sort()
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[int(0.95 * (runs - 1))]}


def first_choice(result: AgentResult) -> str:
    return result.tool_calls[0].name if result.tool_calls else "answer_directly"


def expected(task: Task) -> str:
    return task.tool or task.action


def real_model(threads: int, repeats: int) -> dict[str, Any]:
    from saem.models.llamacpp import LlamaCppChatModel

    model = LlamaCppChatModel(temperature=0, max_tokens=160, n_threads=threads, n_ctx=4096)
    AgentLoop(model, session()).run("warm up")  # loads the GGUF; not measured
    out: dict[str, Any] = {"model": model.model_name}
    for name, cls in LOOPS.items():
        rows = []
        for _ in range(repeats):
            for task in TASKS:
                loop = cls(model, session())
                started = time.perf_counter()
                result = loop.run(task.question)
                seconds = time.perf_counter() - started
                rows.append({
                    "question": task.question,
                    "expected": expected(task),
                    "chosen": first_choice(result),
                    "correct": first_choice(result) == expected(task),
                    "steps": len(result.steps),
                    "tool_calls": len(result.tool_calls),
                    "stop_reason": result.stop_reason,
                    "seconds": seconds,
                    "answer": result.text[:100],
                })  # fmt: skip
        out[name] = {
            "accuracy": sum(r["correct"] for r in rows) / len(rows),
            "median_s": statistics.median(r["seconds"] for r in rows),
            "rows": rows,
        }
    a, b = (out[n]["rows"] for n in LOOPS)
    out["same_choices"] = sum(x["chosen"] == y["chosen"] for x, y in zip(a, b, strict=True)) / len(a)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    over = {name: overhead(cls) for name, cls in LOOPS.items()}
    real = real_model(args.threads, args.repeats)
    print("\nloop overhead, scripted model, 3-step run (50 runs)")
    print(f"{'loop':<24} {'p50 ms':>8} {'p95 ms':>8}")
    for name, o in over.items():
        print(f"{name:<24} {o['p50_ms']:>8.1f} {o['p95_ms']:>8.1f}")
    print(f"\n{real['model']} in loop mode, {len(TASKS)} tasks x {args.repeats}")
    print(f"{'loop':<24} {'first tool right':>16} {'median s/run':>13}")
    for name in LOOPS:
        r = real[name]
        print(f"{name:<24} {r['accuracy']:>16.0%} {r['median_s']:>13.2f}")
    print(f"same first choice in both loops: {real['same_choices']:.0%}")
    payload = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "threads": args.threads,
        "repeats": args.repeats,
        "overhead": over,
        "packaged": real,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
