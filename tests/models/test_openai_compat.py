"""OpenAICompatibleChatModel against ``python -m llama_cpp.server`` started on 127.0.0.1 by the test.

The server renders SmolLM2's template with llama-cpp-python's own Jinja formatter, so answers
differ from the in-process model; these tests check the wire plumbing, not answer quality.
No expected failures.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel

from saem.errors import ModelError
from saem.models import OpenAICompatibleChatModel
from saem.models.registry import resolve
from saem.settings import Settings


@pytest.mark.unit
class TestOpenAICompatUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return OpenAICompatibleChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": "http://127.0.0.1:9/v1", "model": "smollm2"}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True


@pytest.mark.unit
def test_from_settings_reads_the_server_the_model_and_sampling() -> None:
    settings = Settings.load(
        {"chat_backend": "openai", "chat_base_url": "http://10.0.0.5:8000/v1", "chat_model": "qwen", "top_p": 0.5},
        environ={},
    )
    llm = OpenAICompatibleChatModel.from_settings(settings, seed=7)
    assert (llm.base_url, llm.model, llm.top_p, llm.seed) == ("http://10.0.0.5:8000/v1", "qwen", 0.5, 7)
    assert (llm.temperature, llm.max_tokens) == (settings.temperature, settings.max_tokens)


@pytest.mark.unit
def test_defaults_without_settings_are_the_settings_defaults() -> None:
    llm, defaults = OpenAICompatibleChatModel(), Settings.load(environ={})
    assert (llm.base_url, llm.temperature, llm.max_tokens, llm.seed) == (
        defaults.chat_base_url,
        defaults.temperature,
        defaults.max_tokens,
        defaults.seed,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    path = resolve("packaged:smollm2", "chat").path
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start within 60 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def llm(server: str) -> OpenAICompatibleChatModel:
    return OpenAICompatibleChatModel(base_url=server, model="smollm2", temperature=0.0, max_tokens=32,
                                     schema_format="json_object")


@pytest.mark.integration
def test_invoke_stream_and_usage(llm: OpenAICompatibleChatModel) -> None:
    result = llm.invoke([HumanMessage("What is the capital of France?")])
    assert isinstance(result, AIMessage) and result.content
    assert result.usage_metadata and result.usage_metadata["input_tokens"] > 0
    assert result.response_metadata["model_name"]
    chunks = list(llm.stream("Hello"))
    full = sum(chunks[1:], chunks[0])
    assert full.content and chunks[-1].chunk_position == "last"
    assert len(chunks) > 2  # streamed, not one blob


@pytest.mark.integration
async def test_async_and_batch(llm: OpenAICompatibleChatModel) -> None:
    results = await llm.abatch(["hi", "hey"])
    assert all(isinstance(r, AIMessage) and r.content for r in results)
    text = "".join([str(c.content) async for c in llm.astream("hi")])
    assert text
    assert len(llm.batch(["a", "b"])) == 2


def magic_function(input: int) -> int:
    """Apply a magic function to an input."""
    return input + 2


@pytest.mark.integration
def test_forced_tool_call_comes_back_as_tool_calls(llm: OpenAICompatibleChatModel) -> None:
    bound = llm.bind_tools([magic_function], tool_choice="any")
    result = bound.invoke("What is the value of magic_function(3)? Use the tool.")
    assert result.tool_calls and result.tool_calls[0]["name"] == "magic_function"
    assert isinstance(result.tool_calls[0]["args"], dict) and result.tool_calls[0]["id"]


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.integration
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_through_the_server(llm: OpenAICompatibleChatModel, method: str) -> None:
    structured = llm.with_structured_output(Person, method=method, include_raw=True)
    out = structured.invoke("Extract the person: Mina is 31 years old.", max_tokens=64)
    assert out["parsing_error"] is None, out["raw"]
    assert isinstance(out["parsed"], Person)


@pytest.mark.integration
def test_unreachable_server_is_a_model_error() -> None:
    llm = OpenAICompatibleChatModel(base_url=f"http://127.0.0.1:{_free_port()}/v1", max_retries=0, timeout=2)
    with pytest.raises(ModelError, match="failed"):
        llm.invoke("hi")
