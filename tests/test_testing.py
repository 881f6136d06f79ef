"""The fakes behave as documented: deterministic, lexical, scripted."""

from __future__ import annotations

import math

import pytest
from langchain_core.messages import HumanMessage

from saem.testing import FakeReranker, HashEmbeddings, ScriptedChatModel, features, tool_call

pytestmark = pytest.mark.unit


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_hash_embeddings_are_deterministic_unit_vectors() -> None:
    emb = HashEmbeddings(dimension=64)
    a = emb.embed_query("토큰화는 텍스트를 나눕니다")
    assert a == HashEmbeddings(64).embed_query("토큰화는 텍스트를 나눕니다")
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert len(emb.embed_documents(["a", "b", "c"])) == 3


def test_hash_embeddings_reflect_shared_words() -> None:
    emb = HashEmbeddings(dimension=256)
    q = emb.embed_query("LoRA rank and alpha")
    near = emb.embed_query("the rank of a LoRA adapter")
    far = emb.embed_query("temperature sampling of tokens")
    assert _cos(q, near) > _cos(q, far)
    ko_q = emb.embed_query("어텐션 메커니즘")
    ko_near = emb.embed_query("어텐션은 토큰 사이의 관계를 계산한다")
    assert _cos(ko_q, ko_near) > _cos(ko_q, far)


def test_features_split_hangul_into_bigrams() -> None:
    assert features("어텐션 AB") == ["어텐", "텐션", "ab"]
    assert features("밥") == ["밥"]
    assert features("!!!") == []


def test_scripted_model_replays_text_tool_calls_and_broken_json() -> None:
    model = ScriptedChatModel(script=["first", tool_call("search", {"q": "x"}), '{"a": '])
    assert model.invoke("hi").content == "first"
    msg = model.invoke([HumanMessage("use a tool")])
    assert msg.tool_calls[0]["name"] == "search" and msg.tool_calls[0]["args"] == {"q": "x"}
    assert model.invoke("json").content == '{"a": '
    assert len(model.prompts) == 3 and model.prompts[1][0].content == "use a tool"
    with pytest.raises(RuntimeError, match="exhausted"):
        model.invoke("more")


def test_scripted_model_streams_and_honours_stop() -> None:
    model = ScriptedChatModel(script=["abcdefg", "keep STOP drop"])
    chunks = [c.content for c in model.stream("x") if c.content]  # langchain adds an empty last chunk
    assert chunks == ["abc", "def", "g"]
    assert model.invoke("y", stop=["STOP"]).content == "keep "


def test_fake_reranker_scores_overlap() -> None:
    scores = FakeReranker().rerank("top-p sampling", ["top-p keeps a nucleus", "LoRA adapters", "sampling top p"])
    assert scores[2] == 1.0 and scores[1] == 0.0 and 0 < scores[0] < 1
    assert FakeReranker().rerank("", ["a"]) == [0.0]
