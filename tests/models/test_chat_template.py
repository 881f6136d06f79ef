"""Chat templates: sandboxed rendering, and SmolLM2's template against the reference rendering."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from saem.errors import ModelError
from saem.models._chat_template import BUILTIN_FORMATS, ChatTemplate, ChatTemplateSecurityError, builtin_template
from saem.models._engine import LlamaEngine
from saem.models._tools import to_template_messages

CHATML = BUILTIN_FORMATS["chatml"]

ATTACKS = [
    "{{ lipsum.__globals__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('echo pwned') }}",
    "{% set xs = [] %}{{ xs.append(1) }}",
    "{% for m in messages %}{{ m.__class__ }}{% endfor %}",
]


class _TemplateOnlyLlama:
    """Just enough of llama_cpp.Llama for an engine to load a template; decoding is an error."""

    def __init__(self, template: str | None) -> None:
        self.metadata = {"tokenizer.chat_template": template} if template is not None else {}
        self.decoded = 0

    def token_bos(self) -> int:
        return 1

    def token_eos(self) -> int:
        return 2

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        return b"".join({1: b"<s>", 2: b"</s>"}.get(t, b"?") for t in tokens)

    def generate(self, *args: object, **kwargs: object) -> None:  # pragma: no cover - must not run
        self.decoded += 1
        raise AssertionError("decoding ran despite a refused template")


@pytest.mark.unit
@pytest.mark.parametrize("source", ATTACKS)
def test_sandbox_refuses_and_says_so(source: str) -> None:
    template = ChatTemplate(source)
    with pytest.raises(SecurityError) as info:
        template.render([{"role": "user", "content": "hi"}])
    assert isinstance(info.value, ModelError)  # one error for saem's CLI, one for jinja users
    assert isinstance(info.value, ChatTemplateSecurityError)
    assert "sandbox" in str(info.value)


@pytest.mark.unit
@pytest.mark.parametrize("source", ATTACKS[:2])
def test_gguf_with_hostile_template_fails_at_load_and_decodes_nothing(source: str) -> None:
    llama = _TemplateOnlyLlama(source)
    with pytest.raises(ChatTemplateSecurityError):
        LlamaEngine(llama=llama)
    assert llama.decoded == 0


@pytest.mark.unit
def test_hostile_override_template_stops_before_decoding() -> None:
    from saem.models import LlamaCppChatModel

    llama = _TemplateOnlyLlama(CHATML)
    engine = LlamaEngine(llama=llama, chat_template="{% if messages|length > 9 %}{{ lipsum.__globals__ }}{% endif %}ok")
    model = LlamaCppChatModel(engine=engine)
    with pytest.raises(SecurityError):
        model.invoke([HumanMessage(str(i)) for i in range(10)])
    assert llama.decoded == 0


@pytest.mark.unit
def test_gguf_without_template_is_a_clear_error_not_a_silent_fallback() -> None:
    with pytest.raises(ModelError, match="no chat template") as info:
        LlamaEngine(llama=_TemplateOnlyLlama(None))
    assert info.value.hint and "chat_format" in info.value.hint
    engine = LlamaEngine(llama=_TemplateOnlyLlama(None), chat_format="chatml")
    assert engine.template.render([{"role": "user", "content": "hi"}]) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.unit
def test_unknown_chat_format_and_broken_templates_are_model_errors() -> None:
    with pytest.raises(ModelError, match="unknown chat_format"):
        builtin_template("llama-9")
    with pytest.raises(ModelError, match="does not compile"):
        ChatTemplate("{% for m in messages %}")
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ModelError, match="roles must alternate"):
        template.render([])


@pytest.mark.unit
def test_hf_template_features_render() -> None:
    source = (
        "{%- for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
        "{{ m.role }}={{ m | tojson }};{% endfor %}{{ bos_token }}{{ eos_token }}"
    )
    out = ChatTemplate(source, bos_token="<s>", eos_token="</s>").render(
        [{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    )
    assert out == 'user={"role": "user", "content": "안녕"};assistant={"role": "assistant", "content": "b"};<s></s>'


# --- SmolLM2's own template ------------------------------------------------------------------

SMOL_DEFAULT_SYSTEM = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
)


@pytest.fixture(scope="module")
def smol_template_source() -> str:
    from saem.models.gguf import inspect_gguf
    from saem.models.registry import resolve

    info = inspect_gguf(resolve("packaged:smollm2", "chat"))
    assert info.chat_template
    return info.chat_template


def _reference(source: str, messages: list[dict[str, str]]) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=source, add_generation_prompt=True)
    return rendered[0]


@pytest.mark.integration
def test_smollm2_rendering_matches_reference_and_hand_written(smol_template_source: str) -> None:
    template = ChatTemplate(smol_template_source)
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "서울은 어디에 있나요?"},
        ],
    ]
    expected = [
        SMOL_DEFAULT_SYSTEM + "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n서울은 어디에 있나요?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ]
    for messages, hand_written in zip(conversations, expected, strict=True):
        ours = template.render(messages)
        assert ours == hand_written
        assert ours == _reference(smol_template_source, messages)


@pytest.mark.integration
def test_smollm2_tool_history_renders_as_text_blocks(smol_template_source: str) -> None:
    template = ChatTemplate(smol_template_source)
    tools = [{"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}]
    history = [
        SystemMessage("Be brief."),
        HumanMessage("1+2?"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("3", tool_call_id="c1", name="add"),
    ]
    messages, native = to_template_messages(history, template, tools)
    assert native is None  # SmolLM2's template knows nothing of tools: saem writes them as text
    text = template.render(messages)
    assert text.startswith("<|im_start|>system\nBe brief.\n\nYou can call functions.")
    assert '{"type": "function", "function": {"name": "add"' in text
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    ) in text
    assert text == _reference(smol_template_source, messages)
