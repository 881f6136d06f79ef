"""Convert a peft LoRA adapter into a GGUF LoRA that llama.cpp loads next to its base GGUF.

The file holds ``general.type = "adapter"``, ``general.architecture`` (the base model's),
``adapter.type = "lora"``, ``adapter.lora.alpha``, and for every adapted linear layer a pair
``<base tensor>.lora_a`` / ``<base tensor>.lora_b`` named after the base GGUF's tensors
(``model.layers.3.self_attn.q_proj`` → ``blk.3.attn_q.weight``).

Layout: peft stores ``lora_A`` as (rank, in) and ``lora_B`` as (out, rank) row-major; ggml lists
dimensions fastest first, so written as they are they have ``ne = [in, rank]`` and
``ne = [rank, out]`` — what llama.cpp checks against the base tensor (``ne = [in, out]``).
llama.cpp scales the product by ``alpha / rank``, as peft does (rsLoRA's ``alpha / sqrt(rank)``
is converted by writing ``alpha * sqrt(rank)``).

q/k permutation: llama.cpp's HF→GGUF conversion for the ``llama`` architecture permutes the
rows (outputs) of ``q_proj`` and ``k_proj`` per head for its RoPE layout, and transformers undoes
that when it loads a GGUF, so an adapter trained in transformers is in HF order. Only the output
side of ``B @ A`` is permuted, so ``lora_b`` of q/k gets the same row permutation (heads for q,
kv-heads for k) and ``lora_a`` stays. (Checked against the base weights: permute(HF q_proj) equals
the dequantized ``blk.0.attn_q.weight`` exactly.)

    >>> report = convert_adapter("out/adapter", base_gguf, "out/adapter.gguf")   # doctest: +SKIP
    >>> report.tensors, report.bytes                                              # doctest: +SKIP

Needs ``gguf`` and ``safetensors`` (no torch). Writes atomically (temp file + rename).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from saem.errors import ModelError

__all__ = ["ConversionReport", "convert_adapter", "gguf_tensor_name", "permute_rows", "SUPPORTED_ARCHITECTURES"]

# architecture -> whether llama.cpp permutes q/k rows for it
SUPPORTED_ARCHITECTURES: dict[str, bool] = {"llama": True}

_MODULES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


@dataclass(frozen=True)
class ConversionReport:
    path: Path
    architecture: str
    rank: int
    alpha: float
    tensors: int
    permuted: int
    bytes: int
    seconds: float


def gguf_tensor_name(peft_key: str) -> tuple[str, str] | None:
    """``(base tensor name, "a"|"b")`` for a peft key, or None when it is no LoRA matrix.

    >>> gguf_tensor_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
    ('blk.0.attn_q.weight', 'a')
    """
    match = _KEY.search(peft_key)
    if match is None:
        return None
    layer, module, side = match.groups()
    if module not in _MODULES:
        raise ModelError(f"LoRA on {module!r} has no GGUF counterpart (layer {layer})")
    return f"blk.{layer}.{_MODULES[module]}.weight", side.lower()


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's per-head RoPE row permutation (its ``LlamaModel.permute``) of an (out, k) matrix."""
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise ModelError(f"cannot permute {rows} rows over {n_head} heads")
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8")
    return value.tolist()[0]


def convert_adapter(
    adapter_dir: str | Path,
    base_gguf: str | Path,
    out_path: str | Path,
    *,
    dtype: Literal["f32", "f16"] = "f32",
) -> ConversionReport:
    """Write ``out_path`` (GGUF LoRA) from a peft adapter folder, checked against ``base_gguf``.

    Raises ``ModelError`` for: a missing file, an unsupported architecture, DoRA, per-module
    rank/alpha patterns, ``modules_to_save``, a LoRA key with no base tensor, or a shape mismatch.
    """
    import gguf
    from safetensors.numpy import load_file

    started = time.perf_counter()
    adapter_dir, base_gguf, out_path = Path(adapter_dir), Path(base_gguf), Path(out_path)
    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    for path in (config_path, weights_path, base_gguf):
        if not path.is_file():
            raise ModelError(f"{path} is missing", path=path, hint="train the adapter first (saem.evaluation.lora)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError("DoRA and per-module rank/alpha patterns cannot be expressed in a GGUF LoRA", path=config_path)
    if config.get("modules_to_save"):
        raise ModelError("modules_to_save (fully trained layers) cannot be expressed in a GGUF LoRA", path=config_path)
    rank = int(config["r"])
    alpha = float(config["lora_alpha"]) * (math.sqrt(rank) if config.get("use_rslora") else 1.0)

    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelError(
            f"GGUF LoRA conversion supports {sorted(SUPPORTED_ARCHITECTURES)}, not {arch!r}", path=base_gguf
        )
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_head_kv = int(_field(reader, f"{arch}.attention.head_count_kv") or n_head)
    base_shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}  # ggml order: [in, out]

    try:
        weights = load_file(str(weights_path))
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"cannot read {weights_path}: {err}", path=weights_path) from err
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        mapped = gguf_tensor_name(key)
        if mapped is None:
            raise ModelError(f"unexpected tensor {key!r} in the adapter", path=weights_path)
        name, side = mapped
        pairs.setdefault(name, {})[side] = value.astype(np.float32)
    if not pairs:
        raise ModelError(f"{weights_path} holds no LoRA matrices", path=weights_path)

    np_dtype = np.float16 if dtype == "f16" else np.float32
    out_tensors: list[tuple[str, np.ndarray]] = []
    permuted = 0
    for name in sorted(pairs, key=_natural):
        pair = pairs[name]
        if set(pair) != {"a", "b"}:
            raise ModelError(f"{name}: the adapter has only lora_{''.join(pair)}", path=weights_path)
        a, b = pair["a"], pair["b"]
        if name not in base_shapes:
            raise ModelError(f"{name} is not a tensor of {base_gguf.name} (wrong base model?)", path=base_gguf)
        n_in, n_out = base_shapes[name][0], base_shapes[name][1]
        if a.shape != (rank, n_in) or b.shape != (n_out, rank):
            raise ModelError(
                f"{name}: lora_a {a.shape} / lora_b {b.shape} do not fit base [{n_in} in, {n_out} out] at rank {rank}",
                path=base_gguf,
            )
        if SUPPORTED_ARCHITECTURES[arch] and name.endswith(("attn_q.weight", "attn_k.weight")):
            b = permute_rows(b, n_head if "attn_q" in name else n_head_kv)
            permuted += 1
        out_tensors += [(f"{name}.lora_a", a), (f"{name}.lora_b", b)]

    tmp = out_path.with_name(out_path.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_string("general.name", f"saem LoRA r{rank} for {base_gguf.name}")
    for tensor_name, array in out_tensors:
        writer.add_tensor(tensor_name, np.ascontiguousarray(array, dtype=np_dtype))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return ConversionReport(
        path=out_path,
        architecture=arch,
        rank=rank,
        alpha=alpha,
        tensors=2 * len(pairs),
        permuted=permuted,
        bytes=out_path.stat().st_size,
        seconds=time.perf_counter() - started,
    )


def _natural(name: str) -> tuple[int, str]:
    match = re.match(r"blk\.(\d+)\.", name)
    return (int(match.group(1)) if match else -1, name)
