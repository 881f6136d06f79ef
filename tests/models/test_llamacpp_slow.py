"""50 structured-output calls on the real SmolLM2: every one must parse and validate.

Grammar-constrained decoding (``json_schema`` and ``function_calling``) makes the output
well-formed by construction; this loop checks that in practice, with saem's default sampling
(temperature 0.2, seed 42) and 50 different inputs. No expected failures.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from saem.models import LlamaCppChatModel
from saem.models._engine import LlamaEngine
from saem.models.registry import resolve
from saem.models.tracing import TraceRecorder

NAMES = ["Mina", "Jun", "Alice", "Bob", "Seo-yeon", "Carlos", "Priya", "Tom", "Yuki", "Omar"]
CITIES = ["Seoul", "Busan", "Paris", "Lima", "Oslo"]


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="the person's first name")
    age: int = Field(description="age in years")
    city: str = Field(description="where the person lives")


@pytest.mark.slow
def test_fifty_structured_calls_all_parse() -> None:
    engine = LlamaEngine.shared(resolve("packaged:smollm2", "chat").path, n_ctx=2048, n_threads=1, n_batch=256)
    recorder = TraceRecorder(maxlen=50)
    model = LlamaCppChatModel(engine=engine, max_tokens=256, on_trace=recorder)  # default sampling
    methods = {"json_schema": model.with_structured_output(Person, method="json_schema", include_raw=True),
               "function_calling": model.with_structured_output(Person, method="function_calling", include_raw=True)}
    failures = []
    for i in range(50):
        method = "json_schema" if i % 2 == 0 else "function_calling"
        name, city, age = NAMES[i % len(NAMES)], CITIES[i % len(CITIES)], 18 + i
        text = f"Extract the person from this text: {name} is {age} years old and lives in {city}."
        out = methods[method].invoke(text)
        if out["parsing_error"] is not None or not isinstance(out["parsed"], Person):
            failures.append((i, method, out["parsing_error"], recorder.last.completion if recorder.last else ""))
    assert not failures, f"{len(failures)}/50 structured outputs failed: {failures[:3]}"
    assert len(recorder.traces) == 50
    assert all(t.grammar in ("json_schema", "tool_call") for t in recorder.traces)
