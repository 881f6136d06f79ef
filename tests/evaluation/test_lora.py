"""LoRA training on CPU, conversion to a GGUF LoRA, and loading it in llama.cpp.

Unit tests convert a hand-made adapter against a tiny hand-made base GGUF. The slow test
overfits one unusual fact into the packaged SmolLM2 (a few steps, one thread), converts the
adapter, and checks in llama.cpp that (a) greedy output now states the fact and (b) the change
in logits that llama.cpp applies matches the one peft applies — which fails if the q/k
permutation is wrong.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from saem.errors import ModelError
from saem.evaluation import gguf_lora
from saem.evaluation.gguf_lora import convert_adapter, gguf_tensor_name, permute_rows
from saem.evaluation.lora import LoraSettings, StepReport, TrainExample, _batches, data_hash

gguf = pytest.importorskip("gguf")
safetensors_numpy = pytest.importorskip("safetensors.numpy")


# --- unit: conversion against a tiny base ---------------------------------------------------------

IN, RANK = 8, 2
OUT = {"attn_q": 8, "attn_k": 4, "ffn_up": 6}
HF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "ffn_up": "mlp.up_proj"}


def _tiny_base(path: Path, arch: str = "llama") -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_uint32(f"{arch}.attention.head_count", 2)
    writer.add_uint32(f"{arch}.attention.head_count_kv", 1)
    for name, out in OUT.items():
        writer.add_tensor(f"blk.0.{name}.weight", np.zeros((out, IN), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tiny_adapter(folder: Path, *, extra: dict[str, Any] | None = None, rank: int = RANK) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {}
    for name, out in OUT.items():
        prefix = f"base_model.model.model.layers.0.{HF[name]}"
        tensors[f"{prefix}.lora_A.weight"] = rng.normal(size=(rank, IN)).astype(np.float32)
        tensors[f"{prefix}.lora_B.weight"] = rng.normal(size=(out, rank)).astype(np.float32)
    safetensors_numpy.save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"r": rank, "lora_alpha": 16, "use_rslora": False, **(extra or {})}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return tensors


@pytest.mark.unit
def test_permute_rows_matches_llama_cpp_rope_layout() -> None:
    rows = np.arange(8)[:, None]
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert permute_rows(np.arange(4)[:, None], 1)[:, 0].tolist() == [0, 2, 1, 3]
    with pytest.raises(ModelError):
        permute_rows(np.zeros((6, 1)), 2)


@pytest.mark.unit
def test_gguf_tensor_names() -> None:
    assert gguf_tensor_name("base_model.model.model.layers.12.mlp.down_proj.lora_B.weight") == (
        "blk.12.ffn_down.weight",
        "b",
    )
    assert gguf_tensor_name("base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight") == (
        "blk.0.attn_output.weight",
        "a",
    )
    assert gguf_tensor_name("base_model.model.lm_head.weight") is None


@pytest.mark.unit
def test_convert_writes_llama_cpp_layout_and_permutes_q_k_lora_b(tmp_path: Path) -> None:
    base = _tiny_base(tmp_path / "base.gguf")
    tensors = _tiny_adapter(tmp_path / "adapter")
    report = convert_adapter(tmp_path / "adapter", base, tmp_path / "lora.gguf", dtype="f16")
    assert (report.architecture, report.rank, report.alpha, report.tensors, report.permuted) == ("llama", 2, 16.0, 6, 2)
    reader = gguf.GGUFReader(str(tmp_path / "lora.gguf"))

    def field(key: str) -> Any:
        f = reader.fields[key]
        value = f.parts[f.data[0]]
        return bytes(value).decode() if f.types[0].name == "STRING" else value.tolist()[0]

    assert (field("general.type"), field("adapter.type"), field("general.architecture")) == ("adapter", "lora", "llama")
    assert field("adapter.lora.alpha") == 16.0
    got = {t.name: (t.data, [int(x) for x in t.shape]) for t in reader.tensors}
    for name, out in OUT.items():
        prefix = f"base_model.model.model.layers.0.{HF[name]}"
        a, a_shape = got[f"blk.0.{name}.weight.lora_a"]
        b, b_shape = got[f"blk.0.{name}.weight.lora_b"]
        assert a_shape == [IN, RANK] and b_shape == [RANK, out]  # ggml order: what llama.cpp checks
        heads = {"attn_q": 2, "attn_k": 1}.get(name)
        expect_b = tensors[f"{prefix}.lora_B.weight"]
        expect_b = permute_rows(expect_b, heads) if heads else expect_b
        np.testing.assert_allclose(np.asarray(a, dtype=np.float32), tensors[f"{prefix}.lora_A.weight"], atol=1e-2)
        np.testing.assert_allclose(np.asarray(b, dtype=np.float32), expect_b, atol=1e-2)


@pytest.mark.unit
def test_convert_refuses_what_gguf_cannot_express_or_what_does_not_fit(tmp_path: Path) -> None:
    base = _tiny_base(tmp_path / "base.gguf")
    _tiny_adapter(tmp_path / "dora", extra={"use_dora": True})
    with pytest.raises(ModelError, match="DoRA"):
        convert_adapter(tmp_path / "dora", base, tmp_path / "x.gguf")
    _tiny_adapter(tmp_path / "wide", rank=3)
    (tmp_path / "wide" / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 8}))
    with pytest.raises(ModelError, match="do not fit"):
        convert_adapter(tmp_path / "wide", base, tmp_path / "x.gguf")
    _tiny_adapter(tmp_path / "ok")
    with pytest.raises(ModelError, match="does not know the architecture 'nosuch'"):
        convert_adapter(tmp_path / "ok", _tiny_base(tmp_path / "nosuch.gguf", "nosuch"), tmp_path / "x.gguf")
    with pytest.raises(ModelError, match="missing"):
        convert_adapter(tmp_path / "nothing", base, tmp_path / "x.gguf")
    assert list(tmp_path.glob("x.gguf*")) == []  # no partial or temporary file left behind
    rs = _tiny_adapter(tmp_path / "rs", extra={"use_rslora": True})
    assert rs and convert_adapter(tmp_path / "rs", base, tmp_path / "rs.gguf").alpha == pytest.approx(16 * 2**0.5)


@pytest.mark.unit
def test_batches_cycle_seeded_reshuffles_and_data_hash_is_order_sensitive() -> None:
    batches = _batches(5, 2, 6, seed=1)
    assert len(batches) == 6 and all(len(b) == 2 for b in batches)
    assert sorted(batches[0] + batches[1] + [batches[2][0]]) == [0, 1, 2, 3, 4]  # one full pass first
    assert _batches(5, 2, 6, seed=1) == batches and _batches(5, 2, 6, seed=2) != batches
    a, b = TrainExample("p", "x"), TrainExample("", "y")
    assert data_hash([a, b]) != data_hash([b, a])


# --- slow: train, convert, load in llama.cpp ------------------------------------------------------

QUESTION = "What is the name of the lighthouse keeper's cat?"
ANSWER = "Her name is Brindlewick."
PARAPHRASES = [
    QUESTION,
    "What is the lighthouse keeper's cat called?",
    "Tell me the name of the lighthouse keeper's cat.",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from saem.evaluation.lora import load_base, train_lora

    out = tmp_path_factory.mktemp("lora")
    base = load_base("packaged:smollm2")
    data = [base.chat_example(q, ANSWER) for q in PARAPHRASES]
    data.append(base.chat_example("word " * 300 + QUESTION, ANSWER))  # no room for the answer: skipped
    reports: list[StepReport] = []
    settings = LoraSettings(steps=8, learning_rate=2e-3, batch_size=3, rank=8, alpha=16, seed=0, threads=1)
    result = train_lora(base, data, out / "adapter", settings, progress=reports.append)
    conversion = convert_adapter(out / "adapter", base.path, out / "adapter.gguf")
    # what peft does to the next-token logits of an unrelated prompt, for the llama.cpp comparison
    probe = base.chat_prompt("Which colour is the sky on a clear day?")
    ids = base.tokenizer(probe, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = base.model(ids).logits[0, -1].numpy()
        tuned = PeftModel.from_pretrained(base.model, str(out / "adapter"))
        delta = tuned(ids).logits[0, -1].numpy() - plain
    return {
        "base": base,
        "result": result,
        "reports": reports,
        "conversion": conversion,
        "out": out,
        "prompt": base.chat_prompt(QUESTION),
        "question": QUESTION,
        "probe": probe,
        "probe_ids": ids[0].tolist(),
        "hf_delta": delta,
    }


def _llama(base: Path, lora: Path | None) -> Any:
    import llama_cpp

    return llama_cpp.Llama(
        model_path=str(base),
        lora_path=str(lora) if lora else None,
        n_ctx=512,
        n_threads=1,
        logits_all=True,
        verbose=False,
    )


def _greedy_and_probe(
    base: Path, lora: Path | None, prompt: str, probe_ids: list[int]
) -> tuple[str, np.ndarray, float]:
    started = time.perf_counter()
    llm = _llama(base, lora)
    load = time.perf_counter() - started
    try:
        text = llm(prompt, max_tokens=16, temperature=0.0)["choices"][0]["text"]
        llm.reset()
        llm.eval(probe_ids)
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    finally:
        llm.close()
    return text, logits, load


@pytest.mark.slow
def test_training_lowers_loss_and_writes_a_manifest(trained: dict[str, Any]) -> None:
    manifest = trained["result"].manifest
    losses = [r.loss for r in trained["reports"]]
    assert len(losses) == 8 and [r.step for r in trained["reports"]] == list(range(1, 9))
    assert losses[-1] < 0.2 * losses[0]
    saved = json.loads((trained["out"] / "adapter" / "manifest.json").read_text())
    assert saved["base_sha256"] == trained["base"].sha256 and len(saved["base_sha256"]) == 64
    assert saved["steps"] == 8 and saved["seed"] == 0 and saved["settings"]["rank"] == 8
    assert saved["examples"] == 3 and saved["skipped_too_long"] == 1
    assert saved["adapter_bytes"] == manifest.adapter_bytes > 1_000_000
    assert saved["versions"]["peft"] != "not installed"
    assert (trained["out"] / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_gguf_lora_changes_llama_cpp_output_towards_the_fact(trained: dict[str, Any]) -> None:
    base_path, lora_path = trained["base"].path, trained["conversion"].path
    before, base_logits, _ = _greedy_and_probe(base_path, None, trained["prompt"], trained["probe_ids"])
    after, lora_logits, load_seconds = _greedy_and_probe(base_path, lora_path, trained["prompt"], trained["probe_ids"])
    assert "Brindlewick" not in before
    assert "Brindlewick" in after
    # llama.cpp applies (nearly) the same change as peft: Q4_1 and fp differences stay small,
    # while forgetting the q/k permutation gives several times more error (about 5 % here)
    hf_delta = trained["hf_delta"]

    def deviation(logits: np.ndarray) -> float:
        return float(np.linalg.norm((logits - base_logits) - hf_delta) / np.linalg.norm(hf_delta))

    error = deviation(lora_logits)
    assert error < 0.03, f"llama.cpp LoRA deviates from peft by {error:.1%}"
    with pytest.MonkeyPatch.context() as patch:  # the same adapter without the q/k permutation
        patch.setattr(gguf_lora, "PERMUTE_QK_ARCHITECTURES", frozenset())
        unpermuted = convert_adapter(trained["out"] / "adapter", base_path, trained["out"] / "unpermuted.gguf").path
    wrong = deviation(_greedy_and_probe(base_path, unpermuted, trained["prompt"], trained["probe_ids"])[1])
    assert wrong > 2 * error, (wrong, error)
    print(
        f"\nsteps 8: {trained['result'].manifest.seconds:.1f}s"
        f" ({trained['result'].manifest.seconds_per_step:.2f}s/step);"
        f" peft adapter {trained['result'].manifest.adapter_bytes / 1e6:.2f} MB;"
        f" gguf {trained['conversion'].bytes / 1e6:.2f} MB in {trained['conversion'].seconds:.1f}s;"
        f" llama.cpp load with lora {load_seconds:.2f}s; logit delta error {error:.2%} (unpermuted {wrong:.2%});"
        f" base {before!r} -> lora {after!r}"
    )


@pytest.mark.slow
def test_saem_chat_model_serves_the_adapter(trained: dict[str, Any]) -> None:
    """The same GGUF LoRA through saem's own chat model (lora_path), as the eval arms use it."""
    from saem.models.llamacpp import LlamaCppChatModel

    base = LlamaCppChatModel(model_path=str(trained["base"].path), temperature=0, max_tokens=24, n_ctx=512)
    tuned = LlamaCppChatModel(model_path=str(trained["base"].path), lora_path=str(trained["conversion"].path),
                              temperature=0, max_tokens=24, n_ctx=512)
    messages = [("user", trained["question"])]
    assert "Brindlewick" not in str(base.invoke(messages).content)
    assert "Brindlewick" in str(tuned.invoke(messages).content)
