"""LangChain's official chat-model suites against ``LlamaCppChatModel`` and the packaged SmolLM2.

The unit suite constructs models only (no weights load). The integration suite shares one
loaded GGUF (``_shared_engine``, loaded once per session) across every test's model object.

Expected failures (``xfail(strict=True)``), each a 135M-model answer-quality limit, not plumbing:

* ``test_agent_loop`` (both output versions) — with ``tool_choice="auto"`` SmolLM2-135M answers
  in prose instead of emitting a ``<tool_call>`` block (forced choices always call: see
  ``test_tool_calling``, ``test_tool_choice``).
* ``test_json_mode`` — JSON mode constrains the output to *a* JSON object (that part works),
  but SmolLM2-135M does not use the ``setup``/``punchline`` keys the prompt asks for.

Skipped by the suite itself, by design: model-override tests (no ``model_override_value``: a
local model has no alternative model names), VCR/benchmark, multimodal inputs (text-only model).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from saem.models import LlamaCppChatModel
from saem.models._engine import LlamaEngine
from saem.models.registry import resolve


def _shared_engine() -> LlamaEngine:
    """The packaged SmolLM2, loaded once per test session (shared with the other model tests)."""
    return LlamaEngine.shared(resolve("packaged:smollm2", "chat").path, n_ctx=2048, n_threads=1, n_batch=256)


@pytest.mark.unit
class TestLlamaCppUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # a local model has no API key; everything else of the standard set is accepted
        params = super().standard_chat_model_params
        params.pop("api_key", None)
        return params

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True


_QUALITY = "SmolLM2-135M quality: "


@pytest.mark.integration
class TestLlamaCppIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"engine": _shared_engine(), "temperature": 0.0, "max_tokens": 96}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @pytest.mark.xfail(strict=True, reason=_QUALITY + "with tool_choice='auto' it answers in prose, no tool call")
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(strict=True, reason=_QUALITY + "JSON mode yields a JSON object without the requested keys")
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)
