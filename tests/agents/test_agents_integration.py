"""Router and extraction with the real packaged SmolLM2 (temperature 0).

Plumbing only: every routing step must yield a valid, allowlisted choice that was run (or
answered directly), and every extraction must validate. Routing accuracy is printed, never
asserted — a 135M model mostly picks one option (bench/agents.py measures it).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from saem.agents.extract import extract
from saem.models.llamacpp import LlamaCppChatModel


@pytest.fixture(scope="module")
def smol() -> LlamaCppChatModel:
    return LlamaCppChatModel(temperature=0, max_tokens=160, n_threads=1)


@pytest.fixture(scope="module")
def bench(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_agents", repo_root / "bench" / "agents.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_router_end_to_end_on_ten_tasks(smol: LlamaCppChatModel, bench: ModuleType) -> None:
    router = bench.make_router(smol)
    allowed = set(router.session.allowed)
    correct = 0
    for task in bench.TASKS:
        result = router.run(task.question)
        assert result.choice is not None, f"no valid choice for {task.question!r}: {result.steps}"
        action = result.choice["action"]
        assert action in {"answer_directly", "search_documents", "use_tool"}
        kinds = [s.kind for s in result.steps]
        if action == "answer_directly":
            assert kinds == ["route", "model"] and result.tool_calls == []
        else:
            (record,) = result.tool_calls
            assert record.name in allowed
            assert record.status in ("ran", "failed"), record  # never refused: the grammar only allows valid calls
            assert kinds == ["route", "tool", "model"]
        assert result.stop_reason == "answer" and result.text.strip()
        correct += bench.correct(task, result)
    print(f"\nrouter accuracy (SmolLM2-135M, 10 tasks): {correct / len(bench.TASKS):.0%}")


class Contact(BaseModel):
    name: str
    city: str
    age: int


PEOPLE = [
    ("Minji", "Seoul", 31),
    ("Tom", "Leeds", 45),
    ("Aiko", "Osaka", 27),
    ("Luis", "Lima", 52),
    ("Sara", "Oslo", 38),
]


@pytest.mark.slow
def test_fifty_extractions_all_parse(smol: LlamaCppChatModel) -> None:
    parsed = 0
    exact = 0
    for i in range(50):
        name, city, age = PEOPLE[i % len(PEOPLE)]
        age += i // len(PEOPLE)
        text = f"Contact #{i}: {name} lives in {city} and is {age} years old."
        contact = extract(smol, Contact, text=text, retries=0)
        parsed += isinstance(contact, Contact)
        exact += contact == Contact(name=name, city=city, age=age)
    print(f"\n50 extractions: parsed {parsed}/50, exactly right {exact}/50")
    assert parsed == 50
