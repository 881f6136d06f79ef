"""Reading a peft LoRA adapter and its base GGUF, and placing one on the other (for ``gguf_lora``).

A peft key (``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight``) names a module;
the installed ``gguf`` package's Hugging Face → GGUF table names its base tensor
(``blk.3.attn_q.weight``). :func:`read_adapter` maps every adapter tensor that way and checks that
the base GGUF holds it; the writers in :mod:`saem.evaluation.gguf_lora` check the shapes.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saem.errors import ModelError

__all__ = [
    "QK_PERMUTED_ELSEWHERE",
    "Adapter",
    "Base",
    "gguf_tensor_name",
    "read_adapter",
    "read_base",
    "read_config",
]

# permuted by llama.cpp's convert_hf_to_gguf.py (LlamaModel family with undo_permute, or their own
# permute) but not reproduced here: a LoRA on their q/k would be silently wrong, so it is refused
QK_PERMUTED_ELSEWHERE: frozenset[str] = frozenset({
    "granite", "granitemoe", "granitehybrid", "smollm3", "arcee", "afmoe", "nanbeige", "cogvlm", "llama-embed",
    "arctic", "chameleon", "deci", "deepseek", "internlm2", "llada", "minicpm", "olmo", "bailingmoe",
})  # fmt: skip

_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_magnitude_vector)(?:\.weight)?$"
)
_SIDE = {"lora_A": "a", "lora_B": "b", "lora_magnitude_vector": "m"}


def gguf_tensor_name(peft_key: str, arch: str = "llama", n_blocks: int | None = None) -> tuple[str, str] | None:
    """``(base tensor name, "a"|"b"|"m")`` for a peft key, or None when it is no LoRA tensor.

    ``"m"`` is DoRA's magnitude vector. ``n_blocks`` defaults to what the key's layer number needs.
    Raises ``ModelError`` when the installed ``gguf`` package maps no tensor to the module.

    >>> gguf_tensor_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
    ('blk.0.attn_q.weight', 'a')
    """
    match = _KEY.match(peft_key)
    if match is None:
        return None
    module = match["module"]
    if n_blocks is None:
        n_blocks = max((int(n) + 1 for n in re.findall(r"\.(\d+)(?=\.|$)", module)), default=1)
    name = _name_map(arch, n_blocks).get_name(f"{module}.weight", try_suffixes=(".weight", ".bias"))
    if name is None:
        raise ModelError(f"LoRA on {module!r} has no GGUF counterpart ({arch}, {n_blocks} blocks)")
    return name, _SIDE[match["kind"]]


@functools.lru_cache(maxsize=8)
def _name_map(arch: str, n_blocks: int) -> Any:
    import gguf

    arch_enum = {name: enum for enum, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_enum is None:
        raise ModelError(f"the installed gguf package does not know the architecture {arch!r}",
                         hint="upgrade the gguf package")  # fmt: skip
    return gguf.get_tensor_name_map(arch_enum, n_blocks)


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8")
    return value.tolist()[0]


@dataclass
class Adapter:
    """A peft adapter folder read into numpy: config, and per base tensor its a / b (/ m) arrays."""

    config: dict[str, Any]
    weights_path: Path
    rank: int
    alpha: float  # as GGUF wants it (rsLoRA folded in)
    modules: dict[str, str]  # base tensor name -> peft module name
    pairs: dict[str, dict[str, np.ndarray]]


@dataclass
class Base:
    reader: Any
    path: Path
    arch: str
    n_blocks: int
    n_head: int | None
    n_head_kv: int | None
    tensors: dict[str, Any]  # name -> ReaderTensor

    def shape(self, name: str) -> list[int]:
        return [int(x) for x in self.tensors[name].shape]  # ggml order: [in, out]


def read_config(adapter_dir: Path) -> tuple[dict[str, Any], Path]:
    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelError(f"{path} is missing", path=path, hint="train the adapter first (saem.evaluation.lora)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("modules_to_save"):
        raise ModelError("modules_to_save (fully trained layers) cannot be expressed in a GGUF LoRA", path=config_path)
    return config, weights_path


def read_base(base_gguf: Path) -> Base:
    import gguf

    if not base_gguf.is_file():
        raise ModelError(
            f"{base_gguf} is missing", path=base_gguf, hint="train the adapter first (saem.evaluation.lora)"
        )
    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise ModelError(f"{base_gguf.name} has no general.architecture", path=base_gguf)
    tensors = {t.name: t for t in reader.tensors}
    blocks = [int(m.group(1)) for name in tensors if (m := re.match(r"blk\.(\d+)\.", name))]
    n_blocks = int(_field(reader, f"{arch}.block_count") or (max(blocks) + 1 if blocks else 0))
    n_head = _field(reader, f"{arch}.attention.head_count")
    n_head_kv = _field(reader, f"{arch}.attention.head_count_kv") or n_head
    return Base(reader, base_gguf, arch, n_blocks, n_head and int(n_head), n_head_kv and int(n_head_kv), tensors)


def read_adapter(config: dict[str, Any], weights_path: Path, base: Base) -> Adapter:
    """Map every peft tensor onto a base tensor (checked to exist; shapes are checked by the callers)."""
    from safetensors.numpy import load_file

    rank = int(config["r"])
    alpha = float(config["lora_alpha"]) * (math.sqrt(rank) if config.get("use_rslora") else 1.0)
    try:
        weights = load_file(str(weights_path))
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"cannot read {weights_path}: {err}", path=weights_path) from err
    pairs: dict[str, dict[str, np.ndarray]] = {}
    modules: dict[str, str] = {}
    for key, value in weights.items():
        match = _KEY.match(key)
        if match is None:
            raise ModelError(f"unexpected tensor {key!r} in the adapter", path=weights_path)
        try:
            mapped = gguf_tensor_name(key, base.arch, base.n_blocks)
        except ModelError as err:
            raise ModelError(err.message, path=weights_path, hint="this module cannot be placed in the GGUF") from err
        assert mapped is not None
        name, side = mapped
        if name not in base.tensors:
            raise ModelError(
                f"{name} (LoRA on {match['module']!r}) is not a tensor of {base.path.name} (wrong base model?)",
                path=base.path,
            )
        if base.arch in QK_PERMUTED_ELSEWHERE and name.endswith(("attn_q.weight", "attn_k.weight")):
            raise ModelError(
                f"{name}: llama.cpp permutes q/k rows for {base.arch!r} and saem does not reproduce that layout",
                path=base.path, hint="train the adapter without q_proj/k_proj",
            )  # fmt: skip
        modules[name] = match["module"]
        pairs.setdefault(name, {})[side] = value.astype(np.float32)
    if not pairs:
        raise ModelError(f"{weights_path} holds no LoRA matrices", path=weights_path)
    for name, pair in pairs.items():
        if not {"a", "b"} <= set(pair):
            raise ModelError(
                f"{name}: the adapter has only lora_{''.join(sorted(set(pair) - {'m'}))}", path=weights_path
            )
    return Adapter(config, weights_path, rank, alpha, modules, pairs)
