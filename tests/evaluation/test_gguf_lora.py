"""GGUF export of a peft LoRA for any architecture the ``gguf`` package maps, and the merged fallback.

Unit tests write tiny base GGUFs (qwen2: no q/k permutation; llama: permuted) and tiny peft
adapter folders by hand. The slow tests train (or perturb) an adapter on the packaged SmolLM2 and
check in llama.cpp that the merged full model behaves like base + GGUF LoRA, and that a merged
DoRA adapter changes the logits the way peft does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

from saem.errors import ModelError
from saem.evaluation import gguf_lora
from saem.evaluation.gguf_lora import (
    AdapterNotConvertible,
    convert_adapter,
    export_for_llama_cpp,
    gguf_tensor_name,
    merge_adapter,
    permute_rows,
)

# --- tiny synthetic models ------------------------------------------------------------------------

HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM, BLOCKS, VOCAB, RANK, ALPHA = 64, 96, 4, 2, 16, 2, 16, 4, 8
OUT_IN = {  # GGUF tensor -> (HF module, out, in)
    "attn_q": ("self_attn.q_proj", HEADS * HEAD_DIM, HIDDEN),
    "attn_k": ("self_attn.k_proj", KV_HEADS * HEAD_DIM, HIDDEN),
    "attn_v": ("self_attn.v_proj", KV_HEADS * HEAD_DIM, HIDDEN),
    "attn_output": ("self_attn.o_proj", HIDDEN, HEADS * HEAD_DIM),
    "ffn_gate": ("mlp.gate_proj", FFN, HIDDEN),
    "ffn_up": ("mlp.up_proj", FFN, HIDDEN),
    "ffn_down": ("mlp.down_proj", HIDDEN, FFN),
}
Q8 = gguf.GGMLQuantizationType.Q8_0


def _base(path: Path, arch: str, *, quantized: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> Path:
    """A 2-block model: F32 weights (``quantized`` ones as Q8_0), biases, norms and a tokenizer-ish KV set."""
    rng = np.random.default_rng(1)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_custom_alignment(64)
    writer.add_name("tiny")
    writer.add_block_count(BLOCKS)
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(VOCAB)])
    writer.add_token_types([1] * VOCAB)
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_bos_token_id(0)

    def add(name: str, array: np.ndarray) -> None:
        if name in quantized:
            writer.add_tensor(name, quantize(array, Q8), raw_dtype=Q8)
        else:
            writer.add_tensor(name, array)

    add("token_embd.weight", rng.normal(size=(VOCAB, HIDDEN)).astype(np.float32))
    for block in range(BLOCKS):
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        for name, (_, out, n_in) in OUT_IN.items():
            if f"blk.{block}.{name}.weight" not in skip:
                add(f"blk.{block}.{name}.weight", rng.normal(size=(out, n_in)).astype(np.float32))
        writer.add_tensor(f"blk.{block}.attn_q.bias", rng.normal(size=HEADS * HEAD_DIM).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _adapter(
    folder: Path,
    *,
    modules: tuple[str, ...] = tuple(OUT_IN),
    extra_keys: dict[str, np.ndarray] | None = None,
    config: dict[str, Any] | None = None,
    ranks: dict[str, int] | None = None,
    dora: bool = False,
) -> dict[str, np.ndarray]:
    """peft's layout: ``base_model.model.model.layers.N.<module>.lora_A.weight`` (rank, in) / ``lora_B`` (out, rank)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    tensors: dict[str, np.ndarray] = {}
    for block in range(BLOCKS):
        for name in modules:
            module, out, n_in = OUT_IN[name]
            rank = (ranks or {}).get(name, RANK)
            prefix = f"base_model.model.model.layers.{block}.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(size=(rank, n_in)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(scale=0.1, size=(out, rank)).astype(np.float32)
            if dora:
                tensors[f"{prefix}.lora_magnitude_vector"] = rng.uniform(0.5, 2.0, size=out).astype(np.float32)
    tensors.update(extra_keys or {})
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    settings = {"r": RANK, "lora_alpha": ALPHA, "use_rslora": False, "use_dora": dora, "rank_pattern": {},
                "alpha_pattern": {}, "modules_to_save": None, **(config or {})}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    return tensors


def _fields(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(str(path))
    return {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("GGUF.")}


def _tensors(path: Path) -> dict[str, Any]:
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


def _weight(tensor: Any) -> np.ndarray:
    """A reader tensor as float32 in numpy (out, in) order."""
    out = dequantize(tensor.data, gguf.GGMLQuantizationType(tensor.tensor_type))
    return np.asarray(out, dtype=np.float32).reshape([int(x) for x in reversed(tensor.shape)])


def _peft(tensors: dict[str, np.ndarray], block: int, name: str, side: str) -> np.ndarray:
    module = OUT_IN[name][0]
    return tensors[f"base_model.model.model.layers.{block}.{module}.{side}.weight"]


# --- unit: adapter conversion ---------------------------------------------------------------------


@pytest.mark.unit
def test_qwen2_adapter_is_named_by_the_gguf_tensor_map_and_not_permuted(tmp_path: Path) -> None:
    base = _base(tmp_path / "base.gguf", "qwen2")
    tensors = _adapter(tmp_path / "adapter")
    report = convert_adapter(tmp_path / "adapter", base, tmp_path / "lora.gguf")
    assert (report.architecture, report.rank, report.alpha, report.method) == ("qwen2", RANK, ALPHA, "adapter")
    assert (report.tensors, report.permuted) == (2 * BLOCKS * len(OUT_IN), 0)
    fields = _fields(tmp_path / "lora.gguf")
    assert fields["general.architecture"] == "qwen2" and fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora" and fields["adapter.lora.alpha"] == ALPHA
    got = _tensors(tmp_path / "lora.gguf")
    expected = {f"blk.{b}.{n}.weight.lora_{s}" for b in range(BLOCKS) for n in OUT_IN for s in "ab"}
    assert set(got) == expected
    for block in range(BLOCKS):
        for name, (_, out, n_in) in OUT_IN.items():
            a, b = got[f"blk.{block}.{name}.weight.lora_a"], got[f"blk.{block}.{name}.weight.lora_b"]
            assert [int(x) for x in a.shape] == [n_in, RANK] and [int(x) for x in b.shape] == [RANK, out]
            np.testing.assert_array_equal(_weight(a), _peft(tensors, block, name, "lora_A"))
            np.testing.assert_array_equal(_weight(b), _peft(tensors, block, name, "lora_B"))  # NEOX rope: as is


@pytest.mark.unit
def test_llama_adapter_still_permutes_q_and_k_lora_b(tmp_path: Path) -> None:
    base = _base(tmp_path / "base.gguf", "llama")
    tensors = _adapter(tmp_path / "adapter")
    report = convert_adapter(tmp_path / "adapter", base, tmp_path / "lora.gguf")
    assert (report.architecture, report.permuted) == ("llama", 2 * BLOCKS)
    got = _tensors(tmp_path / "lora.gguf")
    for block in range(BLOCKS):
        for name in OUT_IN:
            b, hf_b = _weight(got[f"blk.{block}.{name}.weight.lora_b"]), _peft(tensors, block, name, "lora_B")
            heads = {"attn_q": HEADS, "attn_k": KV_HEADS}.get(name)
            np.testing.assert_array_equal(b, permute_rows(hf_b, heads) if heads else hf_b)
            if heads:
                assert not np.array_equal(b, hf_b)  # the permutation really moves rows
            np.testing.assert_array_equal(_weight(got[f"blk.{block}.{name}.weight.lora_a"]),
                                          _peft(tensors, block, name, "lora_A"))  # fmt: skip


@pytest.mark.unit
def test_tensor_names_come_from_the_gguf_package_for_other_architectures() -> None:
    key = "base_model.model.model.layers.7.self_attn.k_proj.lora_B.weight"
    assert gguf_tensor_name(key, "gemma2", 26) == ("blk.7.attn_k.weight", "b")
    dora = key.replace("lora_B.weight", "lora_magnitude_vector")  # peft 0.21 names it without .weight
    assert (
        gguf_tensor_name(dora, "qwen2") == gguf_tensor_name(dora + ".weight", "qwen2") == ("blk.7.attn_k.weight", "m")
    )
    assert gguf_tensor_name("base_model.model.model.layers.2.mlp.down_proj.lora_A.weight", "phi3", 4) == (
        "blk.2.ffn_down.weight",
        "a",
    )
    assert gguf_tensor_name("base_model.model.model.embed_tokens.weight", "qwen2", 2) is None
    with pytest.raises(ModelError, match=r"'model\.layers\.5\.self_attn\.q_proj' has no GGUF counterpart"):
        gguf_tensor_name("base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight", "qwen2", 2)


@pytest.mark.unit
def test_unmappable_missing_or_misfitting_modules_are_clear_errors(tmp_path: Path) -> None:
    base = _base(tmp_path / "base.gguf", "qwen2", skip=("blk.1.ffn_gate.weight",))
    rng = np.random.default_rng(0)
    odd = "base_model.model.model.layers.0.self_attn.rotary_mixer"
    _adapter(tmp_path / "odd", modules=("attn_q",), extra_keys={
        f"{odd}.lora_A.weight": rng.normal(size=(RANK, HIDDEN)).astype(np.float32),
        f"{odd}.lora_B.weight": rng.normal(size=(HIDDEN, RANK)).astype(np.float32),
    })  # fmt: skip
    with pytest.raises(
        ModelError, match=r"LoRA on 'model\.layers\.0\.self_attn\.rotary_mixer' has no GGUF counterpart"
    ):
        convert_adapter(tmp_path / "odd", base, tmp_path / "x.gguf")
    _adapter(tmp_path / "gate", modules=("ffn_gate",))
    with pytest.raises(
        ModelError, match=r"blk\.1\.ffn_gate\.weight \(LoRA on 'model\.layers\.1\.mlp\.gate_proj'\) is not"
    ):
        convert_adapter(tmp_path / "gate", base, tmp_path / "x.gguf")
    _adapter(tmp_path / "wide", modules=("attn_v",), ranks={"attn_v": RANK + 1})
    with pytest.raises(ModelError, match=r"blk\.0\.attn_v\.weight: lora_a \(5, 64\) / lora_b \(32, 5\) do not fit"):
        convert_adapter(tmp_path / "wide", base, tmp_path / "x.gguf")
    with pytest.raises(ModelError, match="do not fit"):  # merging cannot place it either
        merge_adapter(tmp_path / "wide", base, tmp_path / "x.gguf")
    _adapter(tmp_path / "qk", modules=("attn_q",))
    with pytest.raises(ModelError, match="llama.cpp permutes q/k rows for 'granite'"):
        convert_adapter(tmp_path / "qk", _base(tmp_path / "granite.gguf", "granite"), tmp_path / "x.gguf")
    assert list(tmp_path.glob("x.gguf*")) == []  # nothing partial left behind


# --- unit: merged full model ----------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_merge_writes_w_plus_scaled_ba_and_copies_everything_else(tmp_path: Path, arch: str) -> None:
    quantized = ("token_embd.weight", "blk.1.ffn_up.weight", "blk.0.attn_v.weight")  # one copied, two merged
    base = _base(tmp_path / "base.gguf", arch, quantized=quantized)
    tensors = _adapter(tmp_path / "adapter", modules=("attn_q", "attn_k", "attn_v", "ffn_up"))
    report = merge_adapter(tmp_path / "adapter", base, tmp_path / "merged.gguf", dtype="f32")
    assert (report.method, report.tensors, report.architecture) == ("merged", 4 * BLOCKS, arch)
    assert report.permuted == (2 * BLOCKS if arch == "llama" else 0)
    assert _fields(tmp_path / "merged.gguf") == _fields(base)  # every KV field, alignment 64 included
    before, after = _tensors(base), _tensors(tmp_path / "merged.gguf")
    assert list(after) == list(before)  # same tensors, same order
    scale = ALPHA / RANK
    for name, tensor in before.items():
        merged = after[name]
        assert [int(x) for x in merged.shape] == [int(x) for x in tensor.shape]
        short = name.split(".")[2] if name.startswith("blk.") else ""
        if name.endswith(".weight") and short in ("attn_q", "attn_k", "attn_v", "ffn_up"):
            block = int(name.split(".")[1])
            delta = scale * _peft(tensors, block, short, "lora_B") @ _peft(tensors, block, short, "lora_A")
            heads = {"attn_q": HEADS, "attn_k": KV_HEADS}.get(short) if arch == "llama" else None
            delta = permute_rows(delta, heads) if heads else delta
            assert merged.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_allclose(_weight(merged), _weight(tensor) + delta, rtol=1e-6, atol=1e-6)
            assert np.abs(delta).max() > 0.1
        else:  # copied as stored: same type, same bytes (Q8_0 token_embd included)
            assert merged.tensor_type == tensor.tensor_type
            assert np.asarray(merged.data).tobytes() == np.asarray(tensor.data).tobytes()


@pytest.mark.unit
def test_merge_applies_dora_and_rank_alpha_patterns_that_a_gguf_lora_cannot_hold(tmp_path: Path) -> None:
    base = _base(tmp_path / "base.gguf", "qwen2")
    patterns = {"rank_pattern": {"down_proj": 2}, "alpha_pattern": {"layers.1.self_attn.q_proj": 3}}
    modules = ("attn_q", "ffn_down")
    tensors = _adapter(tmp_path / "dora", modules=modules, dora=True, ranks={"ffn_down": 2}, config=patterns)
    with pytest.raises(AdapterNotConvertible, match="DoRA"):
        convert_adapter(tmp_path / "dora", base, tmp_path / "x.gguf")
    merge_adapter(tmp_path / "dora", base, tmp_path / "merged.gguf", dtype="f32")
    before, after = _tensors(base), _tensors(tmp_path / "merged.gguf")
    for block in range(BLOCKS):
        for short, scale in (("attn_q", (3 if block else ALPHA) / RANK), ("ffn_down", ALPHA / 2)):
            name = f"blk.{block}.{short}.weight"
            module = f"base_model.model.model.layers.{block}.{OUT_IN[short][0]}"
            v = _weight(before[name]) + scale * _peft(tensors, block, short, "lora_B") @ _peft(
                tensors, block, short, "lora_A"
            )
            magnitude = tensors[f"{module}.lora_magnitude_vector"]
            expected = (magnitude / np.linalg.norm(v, axis=1))[:, None] * v
            np.testing.assert_allclose(_weight(after[name]), expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(_weight(after[name]), axis=1), magnitude, rtol=1e-5)


@pytest.mark.unit
def test_export_writes_a_gguf_lora_when_it_can_and_merges_when_it_cannot(tmp_path: Path) -> None:
    base = _base(tmp_path / "base.gguf", "qwen2")
    _adapter(tmp_path / "plain")
    first = export_for_llama_cpp(tmp_path / "plain", base, tmp_path / "plain")
    assert (first.method, first.path.name) == ("adapter", "adapter.gguf") and first.path.is_file()
    assert (
        first.reason == f"GGUF LoRA: {2 * BLOCKS * len(OUT_IN)} tensors for {BLOCKS * len(OUT_IN)} qwen2 base tensors"
    )
    assert first.bytes == first.path.stat().st_size and not (tmp_path / "plain" / "merged.gguf").exists()

    _adapter(tmp_path / "dora", modules=("attn_v",), dora=True)
    (tmp_path / "dora" / "adapter.gguf").write_bytes(b"stale")  # from an earlier, plain training
    second = export_for_llama_cpp(tmp_path / "dora", base, tmp_path / "dora")
    assert (second.method, second.path.name, second.tensors) == ("merged", "merged.gguf", BLOCKS)
    assert (
        "DoRA cannot be expressed in a GGUF LoRA" in second.reason and "merged into a full qwen2 model" in second.reason
    )
    assert not (tmp_path / "dora" / "adapter.gguf").exists()  # never served stale
    assert _tensors(second.path)["blk.0.attn_v.weight"].tensor_type == gguf.GGMLQuantizationType.F16

    head = {"lora_A": np.zeros((RANK, HIDDEN), np.float32), "lora_B": np.zeros((VOCAB, RANK), np.float32)}
    _adapter(tmp_path / "odd", extra_keys={f"base_model.model.lm_head.{k}.weight": v for k, v in head.items()})
    with pytest.raises(ModelError, match=r"output\.weight \(LoRA on 'lm_head'\) is not a tensor"):  # no fallback
        export_for_llama_cpp(tmp_path / "odd", base, tmp_path / "odd")
    assert sorted(p.name for p in (tmp_path / "odd").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert gguf_lora.MERGED_FILE == "merged.gguf" and gguf_lora.ADAPTER_FILE == "adapter.gguf"


# --- slow: the packaged SmolLM2 in llama.cpp --------------------------------------------------------

QUESTION = "What is the name of the lighthouse keeper's cat?"
ANSWER = "Her name is Brindlewick."
PARAPHRASES = [
    QUESTION,
    "What is the lighthouse keeper's cat called?",
    "Tell me the name of the lighthouse keeper's cat.",
]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """SmolLM2 with a LoRA trained for 4 steps, written as a GGUF LoRA and as a merged model."""
    from saem.evaluation.lora import LoraSettings, load_base, train_lora
    from saem.models.registry import resolve

    out = tmp_path_factory.mktemp("merge")
    path = resolve("packaged:smollm2", "chat").path
    assert path is not None
    base = load_base(str(path))
    data = [base.chat_example(q, ANSWER) for q in PARAPHRASES]
    settings = LoraSettings(steps=4, learning_rate=2e-3, batch_size=3, rank=8, alpha=16, seed=0, threads=1)
    train_lora(base, data, out / "adapter", settings)
    adapter = convert_adapter(out / "adapter", path, out / "adapter.gguf")
    merged = merge_adapter(out / "adapter", path, out / "merged.gguf")
    return {"base": base, "path": path, "out": out, "adapter": adapter, "merged": merged,
            "prompt": base.chat_prompt(QUESTION)}  # fmt: skip


def _run(model: Path, lora: Path | None, prompt: str, probe: list[int]) -> tuple[list[int], np.ndarray]:
    """Greedy 8-token continuation (token ids) and the last-position logits of ``probe``."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model), lora_path=str(lora) if lora else None, n_ctx=512, n_threads=1,
                          logits_all=True, verbose=False)  # fmt: skip
    try:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        tokens = [t for t, _ in zip(llm.generate(ids, temp=0.0, top_k=1), range(8), strict=False)]
        llm.reset()
        llm.eval(probe)
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    finally:
        llm.close()
    return tokens, logits


@pytest.mark.slow
def test_merged_smollm2_loads_in_llama_cpp_and_continues_like_base_plus_gguf_lora(smollm2: dict[str, Any]) -> None:
    merged, adapter = smollm2["merged"], smollm2["adapter"]
    assert merged.method == "merged" and merged.tensors == 30 * 7 and merged.permuted == 60
    assert _fields(merged.path) == _fields(smollm2["path"])  # tokenizer, chat template, hparams: all kept
    probe = smollm2["base"].tokenizer(smollm2["base"].chat_prompt("Which colour is the sky?"),
                                      add_special_tokens=False)["input_ids"]  # fmt: skip
    base_tokens, base_logits = _run(smollm2["path"], None, smollm2["prompt"], probe)
    lora_tokens, lora_logits = _run(smollm2["path"], adapter.path, smollm2["prompt"], probe)
    merged_tokens, merged_logits = _run(merged.path, None, smollm2["prompt"], probe)
    assert lora_tokens != base_tokens  # the adapter changes the continuation, so agreeing means something
    # Measured: all 8 greedy tokens agree. base+LoRA multiplies Q8_1-quantised activations by the
    # Q4_1 weights and adds the F32 LoRA product; the merged F16 weights see F16 activations, so the
    # logits differ by quantisation noise (2.1 % of the LoRA's own change): tokens could in principle
    # part late in a long continuation, hence the logit check below as well.
    assert merged_tokens == lora_tokens, (merged_tokens, lora_tokens)
    change = np.linalg.norm(lora_logits - base_logits)
    error = float(np.linalg.norm(merged_logits - lora_logits) / change)
    print(f"\nmerged vs base+lora: logit deviation {error:.2%} of the LoRA's change; merged {merged.bytes / 1e6:.0f} MB"
          f" in {merged.seconds:.1f}s; tokens {merged_tokens}")  # fmt: skip
    assert error < 0.1, error


@pytest.mark.slow
def test_merged_dora_equals_peft_merge_and_changes_llama_cpp_logits_as_peft_does(smollm2: dict[str, Any]) -> None:
    """DoRA has no GGUF LoRA form: export merges it. The merged weights equal peft's own merge (in
    GGUF order), and llama.cpp then changes the logits the way peft does."""
    import copy

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    base, out = smollm2["base"], smollm2["out"]
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "k_proj", "down_proj"])
    model = get_peft_model(base.model, config)
    model.save_pretrained(str(out / "identity"))  # as initialised: B = 0, magnitude = |W| (a no-op)
    with torch.no_grad():  # move B and the magnitudes off the identity
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
            elif "lora_magnitude_vector" in name:
                param.mul_(1 + 0.5 * torch.rand_like(param))
    model.save_pretrained(str(out / "dora"))
    base.model = model.unload()
    report = export_for_llama_cpp(out / "dora", smollm2["path"], out / "dora")
    assert report.method == "merged" and "DoRA" in report.reason and report.tensors == 30 * 3
    assert report.permuted == 60 and report.path.name == "merged.gguf"

    # 1. weights: ours == peft's merge_and_unload, permuted into the GGUF order, to F16 rounding
    peft_merged = PeftModel.from_pretrained(copy.deepcopy(base.model), str(out / "dora")).merge_and_unload()
    before, after = _tensors(smollm2["path"]), _tensors(report.path)
    worst = 0.0
    for layer in range(30):
        for module, short, heads in (("self_attn.q_proj", "attn_q", 9), ("self_attn.k_proj", "attn_k", 3),
                                     ("mlp.down_proj", "ffn_down", None)):  # fmt: skip
            hf = peft_merged.get_submodule(f"model.layers.{layer}.{module}").weight.detach().numpy()
            expected = permute_rows(hf, heads) if heads else hf
            name = f"blk.{layer}.{short}.weight"
            change = np.linalg.norm(expected - _weight(before[name]))
            worst = max(worst, float(np.linalg.norm(_weight(after[name]) - expected) / change))
    del peft_merged
    assert worst < 0.01, worst  # measured 0.10 % (F16 rounding)

    # 2. llama.cpp: the merged model's logit change matches peft's. Both llama.cpp runs use F16 q/k/down
    # (the identity DoRA merged the same way), yet llama.cpp's own noise (Q8 activations against the
    # Q4_1 layers left as they are) does not cancel: measured 13 % of a logit change of norm ≈700,
    # where the weights themselves agree to 0.1 %. Leaving q/k unpermuted must be far worse.
    probe = base.tokenizer(base.chat_prompt("Which colour is the sky?"), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([probe])
    with torch.no_grad():
        plain = base.model(ids).logits[0, -1].numpy()
        tuned = PeftModel.from_pretrained(base.model, str(out / "dora"))
        hf_delta = tuned(ids).logits[0, -1].numpy() - plain
        base.model = tuned.unload()
    neutral = merge_adapter(out / "identity", smollm2["path"], out / "identity" / "merged.gguf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf_lora, "PERMUTE_QK_ARCHITECTURES", frozenset())
        unpermuted = merge_adapter(out / "dora", smollm2["path"], out / "unpermuted.gguf")
    _, neutral_logits = _run(neutral.path, None, "x", probe)

    def deviation(model: Path) -> float:
        logits = _run(model, None, "x", probe)[1]
        return float(np.linalg.norm((logits - neutral_logits) - hf_delta) / np.linalg.norm(hf_delta))

    error, wrong = deviation(report.path), deviation(unpermuted.path)
    print(f"\nDoRA: merged weights vs peft merge {worst:.2%} of the change; llama.cpp logit delta error "
          f"{error:.2%} (|peft delta| {np.linalg.norm(hf_delta):.0f}; unpermuted {wrong:.2%})")  # fmt: skip
    assert error < 0.25, error
    assert wrong > 2 * error, (wrong, error)
