"""The declared extras saem uses — ``PromptModel`` (chat models) and ``TokenLimitedEmbedder``
(embedders) — checked on every model saem ships and on its fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from saem.app.traces import TraceStore
from saem.app.turn import TurnDeps
from saem.memory.longterm import LongTermMemory
from saem.models.embedders import SentenceTransformerEmbeddings, load_embedder
from saem.models.llamacpp import LlamaCppChatModel
from saem.models.openai_compat import OpenAICompatibleChatModel
from saem.models.protocols import PromptModel, TokenLimitedEmbedder
from saem.models.registry import resolve
from saem.settings import Settings
from saem.store.chat import MemoryDB
from saem.testing import HashEmbeddings, ScriptedChatModel, ScriptedPromptModel


@pytest.mark.unit
def test_the_llama_cpp_model_and_its_fake_keep_the_whole_contract() -> None:
    model = LlamaCppChatModel(n_ctx=2048, max_tokens=64)
    assert isinstance(model, PromptModel)
    assert not model._engine.loaded  # the check reads no weights
    fake = ScriptedPromptModel(script=[])
    assert isinstance(fake, PromptModel)
    assert fake.count_tokens([("user", "two words")]) == len(fake.render_prompt([("user", "two words")]).split())
    fake.prefill([("system", "s")])
    assert [m.text for m in fake.prefilled[0]] == ["s"]


def build(model: object, tmp_path: Path) -> TurnDeps:
    """A turn's dependencies for ``model`` over settings that say n_ctx 3000, max_tokens 300."""
    settings = Settings.load({"data_dir": tmp_path, "n_ctx": 3000, "max_tokens": 300}, environ={})
    db = MemoryDB.open(tmp_path / "saem.db")
    ltm = LongTermMemory(db, HashEmbeddings(16))
    return TurnDeps.build(settings, model, lambda q, k: [], db, ltm, TraceStore(db))  # type: ignore[arg-type]


@pytest.mark.unit
@pytest.mark.parametrize(
    "model",
    [OpenAICompatibleChatModel(model="m", base_url="http://127.0.0.1:9/v1"), ScriptedChatModel(script=[])],
    ids=["openai-compatible", "scripted"],
)
def test_other_models_are_plain_chat_models_and_the_settings_fill_in(model: object, tmp_path: Path) -> None:
    assert not isinstance(model, PromptModel)
    deps = build(model, tmp_path)
    assert (deps.builder.n_ctx, deps.builder.max_tokens) == (3000, 300)


@pytest.mark.unit
def test_a_prompt_models_own_window_and_tokenizer_win_over_the_settings(tmp_path: Path) -> None:
    deps = build(ScriptedPromptModel(script=[], n_ctx=2048, max_tokens=64), tmp_path)
    assert (deps.builder.n_ctx, deps.builder.max_tokens) == (2048, 64)
    assert deps.builder.count_text("one two three") == 3  # the model's count (a word a token), not an estimate


# --- TokenLimitedEmbedder -----------------------------------------------------------------------


class _Limited(HashEmbeddings):
    """The fake with a limit, as a user's embedder might set one."""

    max_seq_length = 8


def keeps_the_token_limit_contract(embedder: object) -> None:
    assert isinstance(embedder, TokenLimitedEmbedder)
    limit = embedder.max_seq_length
    assert limit is None or (type(limit) is int and limit >= 1)
    short, long = embedder.tokenizer_count("토큰"), embedder.tokenizer_count("토큰이란 무엇인가? Tokens. " * 20)
    assert 0 < short < long and isinstance(short, int)


@pytest.mark.unit
@pytest.mark.parametrize("embedder", [HashEmbeddings(16), _Limited(16)], ids=["no-limit", "limit"])
def test_the_fake_embedders_keep_the_token_limit_contract(embedder: HashEmbeddings) -> None:
    keeps_the_token_limit_contract(embedder)


@pytest.mark.unit
def test_saem_s_embedder_is_token_limited_before_it_loads_and_plain_embedders_are_not(tmp_path: Path) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}", encoding="utf-8")
    emb = SentenceTransformerEmbeddings(resolve(str(tmp_path / "m"), "embed"))
    assert isinstance(emb, TokenLimitedEmbedder)
    assert not emb.loaded  # the check reads no weights (and a model that cannot load does not raise)
    assert not isinstance(DeterministicFakeEmbedding(size=8), TokenLimitedEmbedder)


@pytest.mark.integration
def test_the_default_packaged_embedder_keeps_the_token_limit_contract() -> None:
    embedder = load_embedder(Settings.load({}, environ={}))
    keeps_the_token_limit_contract(embedder)
    assert embedder.loaded
