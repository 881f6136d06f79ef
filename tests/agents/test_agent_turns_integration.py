"""An agent turn through ``Saem.ask`` with the real packaged models: stored, traced, remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from saem.app.saem import Saem
from saem.app.types import Answer

pytestmark = pytest.mark.integration

DOCS = {
    "sampling.md": "# Sampling\n\nTop-p sampling keeps the smallest set of tokens whose probability mass exceeds p.\n",
    "lora.md": "# LoRA\n\nLoRA trains two small low-rank matrices instead of the full weight matrix.\n",
}


def test_agent_turn_is_stored_traced_with_the_real_template_and_remembered(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for name, text in DOCS.items():
        (tmp_path / "docs" / name).write_text(text, encoding="utf-8")
    app = Saem(data_dir=tmp_path / "dd", n_threads=2, temperature=0, max_tokens=48)
    app.ingest(tmp_path / "docs")

    result = app.ask("What is 17 times 23?", session_id="s", user_id="u", tools=["calculator"])
    assert isinstance(result, Answer) and result.trace_id and result.agent == "router"
    trace = app.trace(result.trace_id)
    assert trace is not None and trace.agent == "router" and trace.steps[0]["kind"] == "route"
    assert [c["status"] for c in trace.tool_calls] == [c.status for c in result.tool_calls]
    # the prompt is rendered by the model's own chat template and counted by its tokenizer
    assert "<|im_start|>" in trace.prompt and "What is 17 times 23?" in trace.prompt and trace.prompt_tokens > 10

    answer = app.ask("What does top-p sampling keep?", session_id="s", user_id="u")
    assert isinstance(answer, Answer)
    later = app.trace(answer.trace_id)
    assert later is not None
    assert not answer.abstained and "What is 17 times 23?" in later.prompt  # the agent turn is history
    assert [m.type for m in app.history("s")] == ["human", "ai", "human", "ai"]
