"""PromptModel: the chat-model extras saem uses, declared once and checked on every model it ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from saem.app.engine import ChatEngine
from saem.models.llamacpp import LlamaCppChatModel
from saem.models.openai_compat import OpenAICompatibleChatModel
from saem.models.protocols import PromptModel
from saem.settings import Settings
from saem.testing import HashEmbeddings, ScriptedChatModel, ScriptedPromptModel

pytestmark = pytest.mark.unit


def test_the_llama_cpp_model_and_its_fake_keep_the_whole_contract() -> None:
    model = LlamaCppChatModel(n_ctx=2048, max_tokens=64)
    assert isinstance(model, PromptModel)
    assert not model._engine.loaded  # the check reads no weights
    fake = ScriptedPromptModel(script=[])
    assert isinstance(fake, PromptModel)
    assert fake.count_tokens([("user", "two words")]) == len(fake.render_prompt([("user", "two words")]).split())
    fake.prefill([("system", "s")])
    assert [m.text for m in fake.prefilled[0]] == ["s"]


@pytest.mark.parametrize(
    "model",
    [OpenAICompatibleChatModel(model="m", base_url="http://127.0.0.1:9/v1"), ScriptedChatModel(script=[])],
    ids=["openai-compatible", "scripted"],
)
def test_other_models_are_plain_chat_models_and_the_settings_fill_in(model: object, tmp_path: Path) -> None:
    assert not isinstance(model, PromptModel)
    settings = Settings.load({"data_dir": tmp_path, "n_ctx": 3000, "max_tokens": 300}, environ={})
    engine = ChatEngine(settings, searcher_or_retrieve_fn=lambda q, k: [], chat_model=model,  # type: ignore[arg-type]
                        memory_db=tmp_path / "saem.db", embeddings=HashEmbeddings(16))  # fmt: skip
    assert (engine.builder.n_ctx, engine.builder.max_tokens) == (3000, 300)
