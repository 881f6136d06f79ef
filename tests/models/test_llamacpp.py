"""LlamaCppChatModel: plumbing with a scripted fake Llama (unit), behaviour with SmolLM2 (integration).

No expected failures here: every integration assertion is about plumbing (token counts, cache
reuse, grammar-forced shapes), not about answer quality.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel

from saem.errors import ModelError, StructuredOutputError, ToolError
from saem.models import LlamaCppChatModel
from saem.models._chat_template import BUILTIN_FORMATS
from saem.models._engine import LlamaEngine
from saem.models.tracing import TraceRecorder
from saem.settings import Settings

SPECIAL = {"<|im_start|>": 1, "<|im_end|>": 2}


class FakeLlama:
    """A byte-level stand-in for ``llama_cpp.Llama``: token = byte + 10, ``<|im_end|>`` = EOS.

    ``generate`` replays ``script`` (a str, or a callable of the prompt text) and records every
    call; ``delay`` makes each token slow, and ``active`` counts concurrent decodes.
    """

    def __init__(self, script: Any = "Hello!", *, n_ctx: int = 4096, delay: float = 0.0) -> None:
        self.metadata = {"tokenizer.chat_template": BUILTIN_FORMATS["chatml"]}
        self.script = script
        self._n_ctx = n_ctx
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.n_tokens = 0
        self.input_ids: list[int] = []
        self.seed: int | None = None
        self.eval_delay = 0.0
        self.evaluating = threading.Event()

    def token_bos(self) -> int:
        return -1

    def token_eos(self) -> int:
        return 2

    def n_ctx(self) -> int:
        return self._n_ctx

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        out: list[int] = []
        i = 0
        while i < len(text):
            for name, tok in SPECIAL.items():
                if special and text.startswith(name.encode(), i):
                    out.append(tok)
                    i += len(name)
                    break
            else:
                out.append(text[i] + 10)
                i += 1
        return out

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        names = {v: k.encode() for k, v in SPECIAL.items()}
        return b"".join(names.get(t, b"") if t < 10 else bytes([t - 10]) for t in tokens)

    def eval(self, tokens: list[int]) -> None:
        """Prefill: extend the 'KV cache' (``eval_delay`` seconds per call, counted in ``evals``)."""
        self.evals = getattr(self, "evals", 0) + 1
        self.evaluating.set()
        time.sleep(self.eval_delay)
        self.input_ids = self.input_ids[: self.n_tokens] + list(tokens)
        self.n_tokens = len(self.input_ids)

    def generate(self, tokens: list[int], **kwargs: Any) -> Any:
        prompt = self.detokenize(tokens, special=True).decode()
        self.calls.append({"prompt": prompt, **kwargs})
        text = self.script(prompt) if callable(self.script) else self.script
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.input_ids, self.n_tokens = list(tokens), len(tokens)
            for tok in [*self.tokenize(text.encode()), 2]:
                if self.delay:
                    time.sleep(self.delay)
                yield tok
        finally:
            self.active -= 1


def fake_model(script: Any = "Hello!", **params: Any) -> tuple[LlamaCppChatModel, FakeLlama]:
    llama = FakeLlama(script, n_ctx=params.pop("n_ctx", 4096), delay=params.pop("delay", 0.0))
    return LlamaCppChatModel(engine=LlamaEngine(llama=llama), **params), llama


def _stream_text(model: Any, messages: Any) -> tuple[str, list[AIMessageChunk]]:
    chunks = list(model.stream(messages))
    return "".join(str(c.content) for c in chunks), chunks


# --- construction ------------------------------------------------------------------------------


@pytest.mark.unit
def test_missing_or_non_gguf_path_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        LlamaCppChatModel(model_path=str(tmp_path / "nope.gguf"))
    bogus = tmp_path / "weights.gguf"
    bogus.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelError, match="not a GGUF"):
        LlamaCppChatModel(model_path=str(bogus))


@pytest.mark.unit
def test_default_is_the_packaged_model_and_construction_loads_nothing() -> None:
    model = LlamaCppChatModel()
    assert model.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert not model._engine.loaded
    assert model._get_ls_params()["ls_model_name"] == "SmolLM2-135M-Instruct.Q4_1"
    assert model._get_ls_params(model="other")["ls_model_name"] == "other"
    with pytest.raises(Exception, match="api_key"):
        LlamaCppChatModel(api_key="x")  # typos and foreign params are refused, not ignored


@pytest.mark.unit
def test_from_settings_maps_every_chat_setting(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 32)
    settings = Settings(
        chat_model=str(gguf), chat_format="chatml", n_ctx=1024, n_threads=3, n_batch=64, temperature=0.7,
        top_p=0.5, top_k=7, repeat_penalty=1.3, max_tokens=33, seed=9, log_prompts=True,
    )
    model = LlamaCppChatModel.from_settings(settings, max_tokens=44)
    assert (model.chat_format, model.n_ctx, model.n_threads, model.n_batch) == ("chatml", 1024, 3, 64)
    assert (model.temperature, model.top_p, model.top_k, model.repeat_penalty) == (0.7, 0.5, 7, 1.3)
    assert (model.max_tokens, model.seed, model.log_prompts) == (44, 9, True)
    assert model.model_name == "tiny"
    engine = model._engine
    assert (engine.n_ctx, engine.n_threads, engine.n_batch, engine.chat_format) == (1024, 3, 64, "chatml")


# --- decoding ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_invoke_reports_usage_metadata_and_a_trace() -> None:
    recorder = TraceRecorder()
    model, llama = fake_model("Paris.", temperature=0.0, on_trace=recorder)
    result = model.invoke([SystemMessage("Be brief."), HumanMessage("Capital of France?")])
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n" \
             "<|im_start|>assistant\n"
    assert result.content == "Paris."
    assert llama.calls[0]["prompt"] == prompt  # decoded on our rendering, byte for byte
    n_prompt = len(llama.tokenize(prompt.encode(), special=True))
    assert result.usage_metadata is not None
    assert result.usage_metadata["input_tokens"] == n_prompt
    assert result.usage_metadata["output_tokens"] == len("Paris.")
    assert result.usage_metadata["total_tokens"] == n_prompt + len("Paris.")
    assert result.response_metadata["model_name"] == model.model_name
    assert result.response_metadata["finish_reason"] == "stop"
    trace = recorder.last
    assert trace is not None and trace.prompt == prompt and trace.completion == "Paris."
    assert trace.sampling["temperature"] == 0.0 and trace.sampling["seed"] == 42
    assert "prompt" not in trace.summary() and "completion" not in trace.summary()
    assert model.count_tokens([SystemMessage("Be brief."), HumanMessage("Capital of France?")]) == n_prompt


@pytest.mark.unit
def test_per_call_sampling_overrides_and_max_tokens() -> None:
    model, llama = fake_model("abcdefgh", temperature=0.2, max_tokens=100)
    result = model.invoke("hi", temperature=0.9, top_k=5, max_tokens=3, seed=7)
    assert result.content == "abc"
    assert result.response_metadata["finish_reason"] == "length"
    assert (llama.calls[0]["temp"], llama.calls[0]["top_k"], llama.seed) == (0.9, 5, 7)
    with pytest.raises(TypeError, match="temprature"):
        model.invoke("hi", temprature=0.1)


@pytest.mark.unit
def test_stop_sequences_cut_output_and_never_leak_into_the_stream() -> None:
    model, _ = fake_model("Hello you there", stop=["there"])
    assert model.invoke("hi", stop=["you"]).content == "Hello "
    text, chunks = _stream_text(model, "hi")
    assert text == "Hello you "
    assert chunks[-1].chunk_position == "last"
    assert all("th" not in str(c.content) for c in chunks)


@pytest.mark.unit
def test_stream_is_token_by_token_and_keeps_multibyte_characters_whole() -> None:
    model, _ = fake_model("안녕 ok")
    text, chunks = _stream_text(model, "hi")
    assert text == "안녕 ok"
    assert "\ufffd" not in text
    assert len([c for c in chunks if c.content]) >= 5  # one chunk per character, not one blob
    full = sum(chunks[1:], chunks[0])
    assert full.usage_metadata is not None and full.usage_metadata["output_tokens"] == len("안녕 ok".encode())
    assert sum(1 for c in chunks if c.usage_metadata) == 1


@pytest.mark.unit
@pytest.mark.parametrize("max_tokens", range(1, 8))
def test_max_tokens_cutting_a_character_drops_its_bytes(max_tokens: int) -> None:
    # one fake token per byte; Hangul is 3 bytes: most limits cut a character in two
    model, _ = fake_model("한국어", max_tokens=max_tokens)
    whole = "한국어"[: max_tokens // 3]
    assert model.invoke("hi").content == whole
    assert _stream_text(model, "hi")[0] == whole


@pytest.mark.unit
def test_prompt_larger_than_context_is_a_model_error() -> None:
    model, _ = fake_model("x", n_ctx=32)
    with pytest.raises(ModelError, match="context holds 32"):
        model.invoke("x" * 100)


@pytest.mark.unit
def test_batch_and_threads_never_decode_concurrently() -> None:
    model, llama = fake_model("slow answer", delay=0.002)
    results = model.batch([f"q{i}" for i in range(4)], config={"max_concurrency": 4})
    with ThreadPoolExecutor(4) as pool:
        results += list(pool.map(model.invoke, ["a", "b", "c", "d"]))
    assert [r.content for r in results] == ["slow answer"] * 8
    assert llama.max_active == 1


@pytest.mark.unit
async def test_abatch_and_astream_share_the_lock() -> None:
    model, llama = fake_model("ok", delay=0.001)
    results = await model.abatch(["a", "b", "c"])
    assert [r.content for r in results] == ["ok"] * 3
    chunks = [c async for c in model.astream("hi")]
    assert "".join(str(c.content) for c in chunks) == "ok"
    assert llama.max_active == 1


@pytest.mark.unit
def test_abandoned_stream_releases_the_model() -> None:
    recorder = TraceRecorder()
    model, _ = fake_model("a long answer", timeout=1.0, on_trace=recorder)
    for _chunk in model.stream("hi"):
        break  # the caller stops reading after the first token
    assert model.invoke("hi").content == "a long answer"  # would time out if the lock leaked


@pytest.mark.unit
def test_timeout_when_the_model_stays_busy() -> None:
    model, _ = fake_model("ok", timeout=0.05)
    with model._engine.lock, pytest.raises(TimeoutError):
        model.invoke("hi")
    assert model.invoke("hi").content == "ok"


@pytest.mark.unit
def test_prefill_fills_the_cache_the_next_call_reuses() -> None:
    recorder = TraceRecorder()
    model, llama = fake_model("ok", on_trace=recorder)
    assert LlamaCppChatModel().prefill([SystemMessage("sys")]) is None  # not loaded: nothing to warm, no load
    history = [SystemMessage("You answer briefly."), HumanMessage("hi"), AIMessage("hello")]
    thread = model.prefill(history)
    assert thread is not None
    thread.join()
    prefix = model._engine.tokenize(model._engine.template.render(
        [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "hello"}], add_generation_prompt=False))  # fmt: skip
    assert llama.n_tokens == len(prefix) - 1 and llama.evals >= 1
    model.invoke([*history, HumanMessage("and now?")])
    assert recorder.last is not None and recorder.last.cached_tokens == len(prefix) - 1
    again = model.prefill(history)
    assert again is not None
    again.join()  # already cached: no evaluation at all
    assert llama.evals == 1


@pytest.mark.unit
def test_prefill_yields_to_a_call_and_skips_a_busy_model() -> None:
    model, llama = fake_model("ok", timeout=5.0)
    model._engine.n_batch = 4
    llama.eval_delay = 0.02
    long = [SystemMessage("x" * 400), HumanMessage("q"), AIMessage("a")]
    thread = model.prefill(long)
    assert thread is not None and llama.evaluating.wait(5)
    assert model.invoke("hi").content == "ok"  # claims the model: the prefill stops at its next batch
    thread.join()
    assert 1 <= llama.evals < 100  # about 105 batches of 4 tokens had it run to the end

    llama.evals, llama.n_tokens, llama.input_ids = 0, 0, []
    with model._engine.hold():
        busy = model.prefill(long)
        assert busy is not None
        busy.join()
    assert llama.evals == 0  # the model was in use: nothing prefilled, nothing waited


@pytest.mark.unit
def test_counting_tokens_neither_waits_for_nor_stops_a_prefill() -> None:
    # the context builder counts tokens many times a turn; were counting to take the model, each
    # count would wait for the prefill's batch in progress and then end the prefill
    model, llama = fake_model("ok")
    model._engine.n_batch = 4
    llama.eval_delay = 0.01
    long = [SystemMessage("x" * 400), HumanMessage("q"), AIMessage("a")]
    thread = model.prefill(long)
    assert thread is not None and llama.evaluating.wait(5)
    counts = [model.get_num_tokens("토큰 수를 셉니다") for _ in range(20)]
    assert model._engine.lock.locked()  # the prefill was still running while we counted
    thread.join()
    assert counts == [len("토큰 수를 셉니다".encode())] * 20
    rendered = model.render_prompt(long).removesuffix("<|im_start|>assistant\n")
    assert llama.n_tokens == len(model._engine.tokenize(rendered)) - 1  # it ran to the end


# --- tools -------------------------------------------------------------------------------------


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def weather(city: str) -> str:
    """Weather in a city."""
    return "sunny"


CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


@pytest.mark.unit
@pytest.mark.parametrize("choice", ["any", "required", "add", {"type": "function", "function": {"name": "add"}}])
def test_forced_tool_choice_decodes_under_a_grammar(choice: Any) -> None:
    model, llama = fake_model(CALL)
    result = model.bind_tools([add, weather], tool_choice=choice).invoke("1+2?")
    assert [(c["name"], c["args"]) for c in result.tool_calls] == [("add", {"a": 1, "b": 2})]
    assert result.tool_calls[0]["id"].startswith("call_")
    assert result.content == ""
    grammar = llama.calls[0]["grammar"]
    assert grammar is not None  # a LlamaGrammar built from the tools' schemas
    assert '\\"add\\"' in grammar._grammar
    assert ('\\"weather\\"' in grammar._grammar) == (choice in ("any", "required"))


@pytest.mark.unit
def test_forced_tool_call_streams_as_tool_call_chunks() -> None:
    model, _ = fake_model(CALL)
    chunks = list(model.bind_tools([add], tool_choice="any").stream("1+2?"))
    full = sum(chunks[1:], chunks[0])
    assert full.tool_calls and full.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert full.content == ""


@pytest.mark.unit
def test_auto_tool_choice_parses_calls_or_keeps_prose() -> None:
    model, llama = fake_model('{"name": "add", "arguments": {"a": 4, "b": 5}}')
    bound = model.bind_tools([add])
    assert bound.invoke("4+5?").tool_calls[0]["args"] == {"a": 4, "b": 5}
    assert llama.calls[0]["grammar"] is None  # auto: the model may answer in text
    llama.script = "It is 9."
    prose = bound.invoke("4+5?")
    assert prose.content == "It is 9." and not prose.tool_calls
    llama.script = "Let me add.<tool_call>\n{not json}\n</tool_call>"
    bad = bound.invoke("4+5?")
    assert bad.content == "Let me add." and not bad.tool_calls and bad.invalid_tool_calls
    text, chunks = _stream_text(model.bind_tools([add]), "4+5?")
    assert text == "Let me add."


@pytest.mark.unit
def test_unknown_tool_choice_is_refused_at_bind_time() -> None:
    model, _ = fake_model()
    with pytest.raises(ToolError, match="not bound"):
        model.bind_tools([add], tool_choice="multiply")


@pytest.mark.unit
def test_tool_history_renders_into_the_prompt() -> None:
    model, llama = fake_model("3")
    history = [
        HumanMessage("1+2?"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("3", tool_call_id="c1", name="add", status="error"),
    ]
    model.bind_tools([add]).invoke(history)
    prompt = llama.calls[0]["prompt"]
    assert prompt.startswith("<|im_start|>system\nYou can call functions.")
    assert f"<|im_start|>assistant\n{CALL}<|im_end|>" in prompt
    assert "<|im_start|>user\n<tool_response>\nError: 3\n</tool_response><|im_end|>" in prompt


# --- structured output -------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.unit
@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_structured_output_validates_and_raises_with_raw(method: str) -> None:
    model, llama = fake_model('{"name": "Mina", "age": 31}')
    structured = model.with_structured_output(Person, method=method)
    assert structured.invoke("Mina is 31.") == Person(name="Mina", age=31)
    assert llama.calls[0]["grammar"] is not None
    assert list(structured.stream("Mina is 31."))[-1] == Person(name="Mina", age=31)
    llama.script = '{"name": "Mina", "age": "old"}'
    with pytest.raises(StructuredOutputError) as info:
        structured.invoke("Mina is 31.")
    assert info.value.raw == '{"name": "Mina", "age": "old"}'
    with pytest.raises(StructuredOutputError):
        list(structured.stream("Mina is 31."))
    llama.script = '{"name": "Mi'
    raw = model.with_structured_output(Person, method=method, include_raw=True).invoke("x")
    assert raw["parsed"] is None and isinstance(raw["parsing_error"], StructuredOutputError)
    assert raw["parsing_error"].raw == '{"name": "Mi'


@pytest.mark.unit
def test_structured_output_by_function_calling_and_dict_schemas() -> None:
    model, _ = fake_model('<tool_call>\n{"name": "Person", "arguments": {"name": "Jun", "age": 8}}\n</tool_call>')
    assert model.with_structured_output(Person, method="function_calling").invoke("x") == Person(name="Jun", age=8)
    model, _ = fake_model('{"name": "Jun", "age": 8}')
    assert model.with_structured_output(Person.model_json_schema()).invoke("x") == {"name": "Jun", "age": 8}
    model, _ = fake_model('{"name": "Jun"}')
    with pytest.raises(StructuredOutputError, match="required keys"):
        model.with_structured_output(Person.model_json_schema(), method="json_mode").invoke("x")


# --- the real model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol() -> LlamaCppChatModel:
    from saem.models.registry import resolve

    engine = LlamaEngine.shared(resolve("packaged:smollm2", "chat").path, n_ctx=2048, n_threads=1, n_batch=256)
    return LlamaCppChatModel(engine=engine, temperature=0.0, max_tokens=24)


SYSTEM = "You are a terse assistant for a document collection. " * 12


@pytest.mark.integration
def test_prefix_is_reused_across_turns(smol: LlamaCppChatModel) -> None:
    recorder = TraceRecorder()
    first = [SystemMessage(SYSTEM), HumanMessage("Name one colour.")]
    smol.invoke(first, on_trace=recorder)
    reply = smol.invoke(first, on_trace=recorder)  # same prompt again: all but one token reused
    second = [*first, AIMessage(str(reply.content)), HumanMessage("And another?")]
    smol.invoke(second, on_trace=recorder)
    once, again, turn2 = recorder.traces
    assert again.cached_tokens == again.prompt_tokens - 1
    assert turn2.cached_tokens >= once.prompt_tokens  # the whole first prompt came from the KV cache
    assert turn2.evaluated_tokens < 40
    assert turn2.time_to_first_token < once.time_to_first_token


@pytest.mark.integration
def test_a_prefilled_history_is_taken_from_the_kv_cache(smol: LlamaCppChatModel) -> None:
    recorder = TraceRecorder()
    smol.invoke([SystemMessage("Something else entirely."), HumanMessage("hi")], max_tokens=2)
    history = [SystemMessage(SYSTEM), HumanMessage("Name one colour."), AIMessage("Blue.")]
    thread = smol.prefill(history)
    assert thread is not None
    thread.join()
    smol.invoke([*history, HumanMessage("And another one?")], on_trace=recorder)
    trace = recorder.last
    assert trace is not None
    rendered = smol.render_prompt(history).removesuffix("<|im_start|>assistant\n")  # SmolLM2's ChatML
    prefix_tokens = len(smol.loaded_engine.tokenize(rendered))
    assert trace.cached_tokens == prefix_tokens - 1  # all but the last token, held back at the seam
    assert trace.evaluated_tokens < 25  # only the new question and the generation prompt


@pytest.mark.integration
def test_tokenizing_beside_a_running_prefill_is_exact(smol: LlamaCppChatModel) -> None:
    # tokenize does not take the model's lock: it must stay exact (and not crash llama.cpp)
    # while another thread decodes
    texts = ["서울의 인구는 얼마인가요?", "Temperature scales the logits.", "토큰화는 " * 40]
    expected = [smol.get_num_tokens(t) for t in texts]
    history = [SystemMessage("배경 지식: " + "어텐션은 토큰 사이의 관계를 계산합니다. " * 20), HumanMessage("hi")]
    smol.invoke([SystemMessage("Something else."), HumanMessage("hi")], max_tokens=1)  # clear the cache
    thread = smol.prefill(history)
    assert thread is not None
    counted: list[list[int]] = []
    while thread.is_alive():
        counted.append([smol.get_num_tokens(t) for t in texts])
    thread.join()
    assert len(counted) > 1  # counted while the prefill ran
    assert all(row == expected for row in counted)
    recorder = TraceRecorder()
    smol.invoke([*history, AIMessage("hello"), HumanMessage("ok?")], max_tokens=1, on_trace=recorder)
    assert recorder.last is not None
    rendered = smol.render_prompt(history).removesuffix("<|im_start|>assistant\n")
    assert recorder.last.cached_tokens >= len(smol.loaded_engine.tokenize(rendered)) - 1  # the prefill completed


@pytest.mark.integration
def test_rendering_is_byte_stable_and_counts_match_usage(smol: LlamaCppChatModel) -> None:
    messages = [SystemMessage("Be brief."), HumanMessage("서울의 인구는?")]
    assert smol.render_prompt(messages) == smol.render_prompt(list(messages))
    result = smol.invoke(messages)
    assert result.usage_metadata is not None
    assert smol.count_tokens(messages) == result.usage_metadata["input_tokens"]
    assert smol.get_num_tokens_from_messages(messages) == result.usage_metadata["input_tokens"]


@pytest.mark.integration
def test_threads_on_the_real_model_do_not_crash(smol: LlamaCppChatModel) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda q: smol.invoke(q, max_tokens=8), ["hi", "hello", "hey", "yo"]))
    assert all(isinstance(r, AIMessage) and r.usage_metadata for r in results)


@pytest.mark.integration
def test_truncated_structured_output_raises_with_the_raw_text(smol: LlamaCppChatModel) -> None:
    structured = smol.with_structured_output(Person, method="json_schema")
    with pytest.raises(StructuredOutputError) as info:
        structured.invoke("Mina is 31 years old.", max_tokens=4)
    assert info.value.raw.startswith("{")


@pytest.mark.integration
def test_ram_cache_serves_alternating_sessions() -> None:
    from saem.models.registry import resolve

    recorder = TraceRecorder()
    engine = LlamaEngine(resolve("packaged:smollm2", "chat").path, n_ctx=1024, cache="ram", cache_bytes=256 << 20)
    model = LlamaCppChatModel(engine=engine, temperature=0.0, max_tokens=4, on_trace=recorder)
    try:
        a = [SystemMessage("Session A. " * 30), HumanMessage("hi")]
        b = [SystemMessage("Session B is different. " * 30), HumanMessage("hi")]
        model.invoke(a)
        model.invoke(b)
        model.invoke(a)  # the live KV cache holds B now; A comes back from the RAM cache
        assert recorder.traces[2].cached_tokens >= recorder.traces[0].prompt_tokens - 1
    finally:
        engine.close()


@pytest.mark.integration
def test_parallel_callers_wait_then_run(smol: LlamaCppChatModel) -> None:
    started = threading.Event()
    recorder = TraceRecorder()

    def slow() -> None:
        started.set()
        smol.invoke("Count to five.", max_tokens=16)

    thread = threading.Thread(target=slow)
    thread.start()
    started.wait()
    smol.invoke("hi", max_tokens=4, on_trace=recorder)
    thread.join()
    assert recorder.last is not None and recorder.last.completion_tokens >= 1
