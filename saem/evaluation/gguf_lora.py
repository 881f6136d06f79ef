"""Turn a peft LoRA adapter into something llama.cpp serves: a GGUF LoRA, or a merged full GGUF.

**GGUF LoRA** (:func:`convert_adapter`) — loaded by llama.cpp next to its base GGUF
(``Llama(model_path=base, lora_path=adapter)``). The file holds ``general.type = "adapter"``,
``general.architecture`` (the base model's), ``adapter.type = "lora"``, ``adapter.lora.alpha``, and
for every adapted linear layer a pair ``<base tensor>.lora_a`` / ``<base tensor>.lora_b`` named after
the base GGUF's tensors. Names come from the installed ``gguf`` package's own Hugging Face → GGUF
table (``gguf.get_tensor_name_map``), so any architecture it knows works
(``model.layers.3.self_attn.q_proj`` → ``blk.3.attn_q.weight`` for llama, qwen2, gemma, …); every
mapped tensor must exist in the base GGUF with a fitting shape.

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
the dequantized ``blk.0.attn_q.weight`` exactly.) Only ``llama`` is permuted
(:data:`PERMUTE_QK_ARCHITECTURES`); NEOX-rope models (qwen2, gemma, phi3, …) are stored in HF order.
A few other architectures are permuted by llama.cpp's converter too, but transformers cannot load
their GGUFs and saem does not reproduce their layout: LoRA on their q/k is refused
(:data:`QK_PERMUTED_ELSEWHERE`) rather than written wrong.

**Merged GGUF** (:func:`merge_adapter`) — the fallback when a GGUF LoRA cannot express the adapter
(DoRA, per-module rank/alpha patterns): a full copy of the base GGUF (every KV field, every
tensor's bytes as stored) in which each adapted weight is replaced by
``dequantize(W) + scale · B @ A`` (DoRA: renormalised per output row to its magnitude vector),
written as F16 (default) or F32, in the GGUF layout (same q/k rule). :func:`export_for_llama_cpp`
tries the first and falls back to the second, and says which it did and why.

    >>> report = export_for_llama_cpp("out/adapter", base_gguf, "out/adapter")   # doctest: +SKIP
    >>> report.method, report.path.name, report.reason                           # doctest: +SKIP
    ('adapter', 'adapter.gguf', 'GGUF LoRA: 420 tensors for 210 llama base tensors')

Needs ``gguf`` and ``safetensors`` (no torch). Writes atomically (temp file + rename). Reading the
adapter and the base GGUF, and mapping peft names onto GGUF tensors, is in ``_gguf_read``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from saem.errors import ModelError
from saem.evaluation._gguf_read import (
    QK_PERMUTED_ELSEWHERE,
    Base,
    gguf_tensor_name,
    read_adapter,
    read_base,
    read_config,
)

logger = logging.getLogger("saem.evaluation")

__all__ = [
    "ADAPTER_FILE",
    "MERGED_FILE",
    "PERMUTE_QK_ARCHITECTURES",
    "QK_PERMUTED_ELSEWHERE",
    "AdapterNotConvertible",
    "ConversionReport",
    "convert_adapter",
    "export_for_llama_cpp",
    "gguf_tensor_name",
    "merge_adapter",
    "permute_rows",
]

ADAPTER_FILE = "adapter.gguf"
MERGED_FILE = "merged.gguf"

# architectures whose q/k rows llama.cpp permutes and transformers un-permutes (the adapter is in HF order)
PERMUTE_QK_ARCHITECTURES: frozenset[str] = frozenset({"llama"})


class AdapterNotConvertible(ModelError):
    """The adapter is fine but a GGUF LoRA cannot express it; :func:`merge_adapter` can (the fallback)."""


@dataclass(frozen=True)
class ConversionReport:
    """What was written. ``tensors``: lora_a + lora_b tensors (``method="adapter"``) or base tensors
    rewritten with the LoRA folded in (``"merged"``). ``reason``: set by :func:`export_for_llama_cpp`."""

    path: Path
    architecture: str
    rank: int
    alpha: float
    tensors: int
    permuted: int
    bytes: int
    seconds: float
    method: Literal["adapter", "merged"] = "adapter"
    reason: str = ""


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's per-head RoPE row permutation (its ``LlamaModel.permute``) of an (out, k) matrix."""
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise ModelError(f"cannot permute {rows} rows over {n_head} heads")
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _qk_heads(base: Base, name: str) -> int | None:
    """Heads to permute ``name``'s output rows over (llama's q/k), else None."""
    if base.arch in PERMUTE_QK_ARCHITECTURES and name.endswith(("attn_q.weight", "attn_k.weight")):
        n_head = base.n_head if "attn_q" in name else base.n_head_kv
        if not n_head:
            raise ModelError(f"{base.path.name} has no {base.arch}.attention.head_count", path=base.path)
        return n_head
    return None


def _write_gguf(out_path: Path, arch: str, fill: Callable[[Any], None]) -> None:
    """Write a GGUF of architecture ``arch`` to ``out_path`` atomically: ``fill(writer)`` writes
    everything into a ``GGUFWriter`` on a temp file, which is closed and then renamed over
    ``out_path`` (on any error the temp file is removed and ``out_path`` is left as it was)."""
    import gguf

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), arch)
        try:
            fill(writer)
        finally:
            writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def convert_adapter(
    adapter_dir: str | Path,
    base_gguf: str | Path,
    out_path: str | Path,
    *,
    dtype: Literal["f32", "f16"] = "f32",
) -> ConversionReport:
    """Write ``out_path`` (GGUF LoRA) from a peft adapter folder, checked against ``base_gguf``.

    Raises ``AdapterNotConvertible`` (a ``ModelError``) for DoRA and per-module rank/alpha
    patterns — :func:`merge_adapter` handles those — and ``ModelError`` for: a missing file,
    ``modules_to_save``, an architecture or module the ``gguf`` package cannot map, a LoRA key
    with no base tensor, or a shape mismatch.
    """
    import gguf

    started = time.perf_counter()
    adapter_dir, base_gguf, out_path = Path(adapter_dir), Path(base_gguf), Path(out_path)
    config, weights_path = read_config(adapter_dir)
    if not base_gguf.is_file():
        raise ModelError(
            f"{base_gguf} is missing", path=base_gguf, hint="train the adapter first (saem.evaluation.lora)"
        )
    if config.get("use_dora"):
        raise AdapterNotConvertible("DoRA cannot be expressed in a GGUF LoRA", path=adapter_dir / "adapter_config.json")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterNotConvertible(
            "per-module rank/alpha patterns are not written into a GGUF LoRA", path=adapter_dir / "adapter_config.json"
        )
    base = read_base(base_gguf)
    adapter = read_adapter(config, weights_path, base)
    rank, alpha = adapter.rank, adapter.alpha

    np_dtype = np.float16 if dtype == "f16" else np.float32
    out_tensors: list[tuple[str, np.ndarray]] = []
    permuted = 0
    for name in sorted(adapter.pairs, key=_natural):
        pair = adapter.pairs[name]
        if "m" in pair:
            raise AdapterNotConvertible(
                f"{name}: DoRA magnitudes cannot be expressed in a GGUF LoRA", path=weights_path
            )
        a, b = pair["a"], pair["b"]
        n_in, n_out = base.shape(name)[0], base.shape(name)[-1]
        if len(base.shape(name)) != 2 or a.shape != (rank, n_in) or b.shape != (n_out, rank):
            raise ModelError(
                f"{name}: lora_a {a.shape} / lora_b {b.shape} do not fit base {base.shape(name)} "
                f"[{n_in} in, {n_out} out] at rank {rank}",
                path=base_gguf,
            )
        heads = _qk_heads(base, name)
        if heads is not None:
            b = permute_rows(b, heads)
            permuted += 1
        out_tensors += [(f"{name}.lora_a", a), (f"{name}.lora_b", b)]

    def fill(writer: Any) -> None:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_string("general.name", f"saem LoRA r{rank} for {base_gguf.name}")
        for tensor_name, array in out_tensors:
            writer.add_tensor(tensor_name, np.ascontiguousarray(array, dtype=np_dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()

    _write_gguf(out_path, base.arch, fill)
    return ConversionReport(
        path=out_path,
        architecture=base.arch,
        rank=rank,
        alpha=alpha,
        tensors=2 * len(adapter.pairs),
        permuted=permuted,
        bytes=out_path.stat().st_size,
        seconds=time.perf_counter() - started,
    )


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """peft's ``get_pattern_key``: the first pattern that matches the end of the module's name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def merge_adapter(
    adapter_dir: str | Path,
    base_gguf: str | Path,
    out_gguf: str | Path,
    *,
    dtype: Literal["f16", "f32"] = "f16",
) -> ConversionReport:
    """Write ``out_gguf``: ``base_gguf`` with the adapter folded into its weights (a full model).

    Every KV field (tokenizer, hyperparameters, chat template, alignment, …) and every tensor not
    adapted is copied as stored (quantized bytes unchanged); each adapted weight becomes
    ``dequantize(W) + scale · B @ A`` in ``dtype``, with ``scale = alpha / r`` per module (rank and
    alpha patterns and rsLoRA as peft applies them) and llama's q/k row permutation; DoRA rows are
    then rescaled to ``magnitude / ‖row‖``. Streams tensor by tensor (memory: one weight).
    Raises ``ModelError`` for what cannot be merged (missing files, ``modules_to_save``, unmapped
    modules, shapes that do not fit, big-endian files).
    """
    import gguf
    from gguf.quants import dequantize

    started = time.perf_counter()
    adapter_dir, base_gguf, out_gguf = Path(adapter_dir), Path(base_gguf), Path(out_gguf)
    config, weights_path = read_config(adapter_dir)
    base = read_base(base_gguf)
    if base.reader.endianess != gguf.GGUFEndian.LITTLE:
        raise ModelError(f"{base_gguf.name} is big-endian; merging supports little-endian GGUFs", path=base_gguf)
    adapter = read_adapter(config, weights_path, base)
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    dora = bool(config.get("use_dora"))
    np_dtype = np.float16 if dtype == "f16" else np.float32

    scales: dict[str, float] = {}
    for name, pair in adapter.pairs.items():
        module = adapter.modules[name]
        rank = int(_pattern_value(rank_pattern, module, adapter.rank))
        alpha = float(_pattern_value(alpha_pattern, module, config["lora_alpha"]))
        shape = base.shape(name)
        a, b = pair["a"], pair["b"]
        if len(shape) != 2 or a.shape != (rank, shape[0]) or b.shape != (shape[1], rank):
            raise ModelError(
                f"{name}: lora_a {a.shape} / lora_b {b.shape} do not fit base {shape} at rank {rank}", path=base_gguf
            )
        if dora != ("m" in pair) or ("m" in pair and pair["m"].reshape(-1).shape != (shape[1],)):
            raise ModelError(f"{name}: DoRA magnitude missing, unexpected or of the wrong size", path=weights_path)
        scales[name] = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)

    permuted = 0

    def merged(tensor: Any) -> np.ndarray:
        nonlocal permuted
        pair, name = adapter.pairs[tensor.name], tensor.name
        weight = dequantize(tensor.data, gguf.GGMLQuantizationType(tensor.tensor_type)).astype(np.float32)
        weight = weight.reshape(int(tensor.shape[1]), int(tensor.shape[0]))  # numpy order: (out, in)
        delta = scales[name] * (pair["b"].astype(np.float64) @ pair["a"].astype(np.float64))
        magnitude = pair["m"].reshape(-1) if "m" in pair else None
        heads = _qk_heads(base, name)
        if heads is not None:
            delta = permute_rows(delta, heads)
            magnitude = permute_rows(magnitude, heads) if magnitude is not None else None
            permuted += 1
        weight = weight + delta.astype(np.float32)
        if magnitude is not None:  # DoRA: W' = m / ||W + ΔW||_row · (W + ΔW), row = one output
            weight *= (magnitude / np.linalg.norm(weight, axis=1)).astype(np.float32)[:, None]
        return np.ascontiguousarray(weight, dtype=np_dtype)

    def fill(writer: Any) -> None:
        for field in base.reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue  # written by GGUFWriter itself / reader pseudo-fields
            if field.name == gguf.Keys.General.ALIGNMENT:
                writer.add_custom_alignment(int(field.contents()))  # also pads the data to it
                continue
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
        for tensor in base.reader.tensors:
            if tensor.name in adapter.pairs:
                n = int(tensor.shape[0]) * int(tensor.shape[1])
                shape = (int(tensor.shape[1]), int(tensor.shape[0]))
                writer.add_tensor_info(tensor.name, shape, np.dtype(np_dtype), n * np.dtype(np_dtype).itemsize)
            else:
                writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                                       raw_dtype=gguf.GGMLQuantizationType(tensor.tensor_type))  # fmt: skip
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in base.reader.tensors:
            data = merged(tensor) if tensor.name in adapter.pairs else tensor.data
            writer.write_tensor_data(data, tensor_endianess=base.reader.endianess)

    _write_gguf(out_gguf, base.arch, fill)
    return ConversionReport(
        path=out_gguf,
        architecture=base.arch,
        rank=adapter.rank,
        alpha=adapter.alpha,
        tensors=len(adapter.pairs),
        permuted=permuted,
        bytes=out_gguf.stat().st_size,
        seconds=time.perf_counter() - started,
        method="merged",
    )


def export_for_llama_cpp(
    adapter_dir: str | Path,
    base_gguf: str | Path,
    out_dir: str | Path,
    *,
    merged_dtype: Literal["f16", "f32"] = "f16",
) -> ConversionReport:
    """``out_dir/adapter.gguf`` (GGUF LoRA) if the adapter can be one, else ``out_dir/merged.gguf``.

    Falls back to :func:`merge_adapter` only on :class:`AdapterNotConvertible`; every other
    ``ModelError`` (missing files, unmapped module, wrong base) is raised as is, since merging could
    not do better. The report's ``method`` says which file was written and ``reason`` why. The other
    file, left by an earlier export into the same folder, is removed so it cannot be served stale.
    """
    adapter_dir, base_gguf, out_dir = Path(adapter_dir), Path(base_gguf), Path(out_dir)
    try:
        report = convert_adapter(adapter_dir, base_gguf, out_dir / ADAPTER_FILE)
        reason = f"GGUF LoRA: {report.tensors} tensors for {report.tensors // 2} {report.architecture} base tensors"
        stale = out_dir / MERGED_FILE
    except AdapterNotConvertible as err:
        try:
            report = merge_adapter(adapter_dir, base_gguf, out_dir / MERGED_FILE, dtype=merged_dtype)
        except ModelError as merge_err:
            raise ModelError(f"cannot export the adapter: {err.message}; merging failed too: {merge_err.message}",
                             path=merge_err.path, hint=merge_err.hint) from merge_err  # fmt: skip
        reason = (
            f"no GGUF LoRA possible ({err.message}): merged into a full {report.architecture} model "
            f"({report.tensors} weights rewritten as {merged_dtype.upper()})"
        )
        logger.warning("LoRA export: %s", reason)
        stale = out_dir / ADAPTER_FILE
    stale.unlink(missing_ok=True)
    return dataclasses.replace(report, reason=reason)


def _natural(name: str) -> tuple[int, str]:
    match = re.match(r"blk\.(\d+)\.", name)
    return (int(match.group(1)) if match else -1, name)
