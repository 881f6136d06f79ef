"""Train a LoRA adapter on CPU with peft, from the packaged GGUF or a local Hugging Face model.

The base model is loaded into transformers:

* a ``.gguf`` file (or ``packaged:<name>``) with ``from_pretrained(dir, gguf_file=name)``, which
  dequantizes it to fp32 (transformers undoes llama.cpp's q/k permutation while loading, so the
  adapter is trained on Hugging Face weight order — :mod:`saem.evaluation.gguf_lora` redoes it);
* a folder holding ``config.json`` and weights, loaded as is.

Nothing is downloaded: a missing model is a :class:`~saem.errors.ModelError`.

Training is a plain loop (no ``Trainer``): seeded shuffled batches, right-padded per batch, loss
on completion tokens only (an example with an empty prompt is trained on every token), AdamW,
gradient clipping at 1.0. ``threads`` sets ``torch.set_num_threads`` for the run and restores it
after. The output folder gets peft's ``adapter_config.json`` + ``adapter_model.safetensors`` and
a ``manifest.json`` (:class:`Manifest`) that says what was trained on what.

    >>> base = load_base("packaged:smollm2")                                  # doctest: +SKIP
    >>> data = [base.chat_example("Who guards the lighthouse?", "Captain Mirel.")]  # doctest: +SKIP
    >>> result = train_lora(base, data, "out/adapter", LoraSettings(steps=20))       # doctest: +SKIP
    >>> result.manifest.final_loss < result.manifest.first_loss                       # doctest: +SKIP
    True

Not thread-safe: one training per process at a time (it changes torch's thread count).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saem.errors import ModelError

logger = logging.getLogger("saem.evaluation")

__all__ = [
    "BaseModel",
    "LoraSettings",
    "Manifest",
    "StepReport",
    "TrainExample",
    "TrainResult",
    "data_hash",
    "file_sha256",
    "load_base",
    "train_lora",
]


@dataclass(frozen=True)
class TrainExample:
    """One training sequence: ``prompt`` (no loss) followed by ``completion`` (loss)."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class LoraSettings:
    """LoRA and optimiser settings. ``target_modules="all-linear"`` = every linear layer but the head."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 4
    steps: int = 100
    max_length: int = 256
    seed: int = 0
    threads: int = 1
    target_modules: str | tuple[str, ...] = "all-linear"
    weight_decay: float = 0.0


@dataclass(frozen=True)
class StepReport:
    """What the progress callback receives after every optimiser step."""

    step: int
    steps: int
    loss: float
    seconds: float


@dataclass
class Manifest:
    """Written as ``manifest.json`` next to the adapter."""

    base_model: str
    base_sha256: str
    data_sha256: str
    examples: int
    seed: int
    steps: int
    seconds: float
    seconds_per_step: float
    first_loss: float
    final_loss: float
    losses: list[float]
    adapter_bytes: int
    settings: dict[str, Any]
    skipped_too_long: int
    versions: dict[str, str]
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))


@dataclass
class TrainResult:
    adapter_dir: Path
    manifest: Manifest


@dataclass
class BaseModel:
    """A loaded base model: transformers model + tokenizer, and where they came from."""

    model: Any
    tokenizer: Any
    source: str
    path: Path
    sha256: str
    load_seconds: float

    def chat_example(self, question: str, answer: str, *, system: str | None = None) -> TrainExample:
        """A QA pair rendered with the model's own chat template (loss on the answer turn only)."""
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": question}
        ]
        tok = self.tokenizer
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
        if not (isinstance(prompt, str) and isinstance(full, str) and full.startswith(prompt)):
            raise ModelError("the chat template does not render a prompt that prefixes the full turn", path=self.path)
        return TrainExample(prompt, full[len(prompt) :])

    def chat_prompt(self, question: str, *, system: str | None = None) -> str:
        """The rendered prompt (with generation prompt) for ``question``, as used in training."""
        return self.chat_example(question, "x", system=system).prompt


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (sorted relative names + contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_hash(examples: Sequence[TrainExample]) -> str:
    """sha256 of the examples as canonical JSON, in order (order changes training)."""
    payload = json.dumps([[e.prompt, e.completion] for e in examples], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_base(model: str | Path) -> BaseModel:
    """Load ``packaged:<name>``, a ``.gguf`` file or a Hugging Face model folder (fp32, eval mode).

    Raises ``ModelError`` when the path does not exist or transformers cannot load it.
    Never downloads: hub ids are refused.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    setting = str(model)
    if setting.startswith("packaged:"):
        from saem.models.registry import resolve

        resolved = resolve(setting, "chat")
        assert resolved.path is not None
        path = resolved.path
    else:
        path = Path(model).expanduser()
    if not path.exists():
        raise ModelError(
            f"base model {setting!r} not found",
            path=path,
            hint="give packaged:smollm2, a .gguf file or a local Hugging Face model folder (nothing is downloaded)",
        )
    started = time.perf_counter()
    try:
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelError(f"{path} is not a .gguf file", path=path, hint="pass a .gguf file or a model folder")
            kwargs: dict[str, Any] = {"gguf_file": path.name, "local_files_only": True}
            tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
            hf_model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
        else:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        raise ModelError(f"transformers could not load {path}: {err}", path=path) from err
    hf_model.eval()  # type: ignore[no-untyped-call]  # transformers leaves Module.eval untyped
    return BaseModel(hf_model, tokenizer, setting, path, file_sha256(path), time.perf_counter() - started)


def _encode(tokenizer: Any, example: TrainExample, max_length: int) -> tuple[list[int], list[int]]:
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"] if example.prompt else []
    completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    ids = (list(prompt) + list(completion))[:max_length]
    labels = ([-100] * len(prompt) + list(completion))[:max_length]
    return ids, labels


def _batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Indices of each step's batch: seeded reshuffles of the data, cycled until ``steps``."""
    rng = random.Random(seed)
    order: list[int] = []
    out: list[list[int]] = []
    size = min(batch_size, n)
    while len(out) < steps:
        if len(order) < size:
            fresh = list(range(n))
            rng.shuffle(fresh)
            order += fresh
        out.append(order[:size])
        del order[:size]
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("saem", "torch", "transformers", "peft", "gguf", "llama-cpp-python"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def train_lora(
    base: BaseModel,
    examples: Sequence[TrainExample],
    out_dir: str | Path,
    settings: LoraSettings | None = None,
    progress: Callable[[StepReport], None] | None = None,
) -> TrainResult:
    """Train ``settings.steps`` optimiser steps and save the adapter + ``manifest.json`` in ``out_dir``.

    ``base.model`` is wrapped by peft in place for the run and unwrapped afterwards (its weights
    are never changed). Deterministic for a given seed, data, thread count and library versions.
    An example whose prompt leaves no completion token within ``max_length`` is skipped and
    counted in ``manifest.skipped_too_long`` (a loss on nothing would teach nothing). Raises
    ``ValueError`` for no examples, or when every example is too long.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    settings = settings or LoraSettings()
    if not examples:
        raise ValueError("no training examples")
    if settings.steps < 1 or settings.batch_size < 1 or settings.threads < 1:
        raise ValueError("steps, batch_size and threads must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = base.tokenizer
    encoded = [_encode(tokenizer, e, settings.max_length) for e in examples]
    kept = [i for i, (_, labels) in enumerate(encoded) if any(label != -100 for label in labels)]
    skipped = len(encoded) - len(kept)
    if not kept:
        raise ValueError(f"every example's prompt is longer than max_length={settings.max_length} tokens")
    if skipped:
        logger.warning("%d of %d training examples do not fit max_length=%d and were skipped",
                       skipped, len(encoded), settings.max_length)  # fmt: skip
        examples = [examples[i] for i in kept]
        encoded = [encoded[i] for i in kept]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    torch.manual_seed(settings.seed)  # LoRA A is initialised randomly
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=(
            settings.target_modules if isinstance(settings.target_modules, str) else list(settings.target_modules)
        ),
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base.model, config)
    losses: list[float] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    try:
        params = [p for p in peft_model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        peft_model.train()
        for step, batch in enumerate(_batches(len(encoded), settings.batch_size, settings.steps, settings.seed), 1):
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq, lab = encoded[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                labels[row, : len(lab)] = torch.tensor(lab)
                mask[row, : len(seq)] = 1
            loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(StepReport(step, settings.steps, losses[-1], time.perf_counter() - started))
        seconds = time.perf_counter() - started
        peft_model.eval()
        peft_model.save_pretrained(str(out), save_embedding_layers=False)  # LoRA matrices only
    finally:
        torch.set_num_threads(previous_threads)
        base.model = peft_model.unload()  # drop the LoRA layers; the base weights were frozen

    adapter_bytes = sum(p.stat().st_size for p in out.iterdir() if p.name.startswith("adapter_"))
    manifest = Manifest(
        base_model=base.source,
        base_sha256=base.sha256,
        data_sha256=data_hash(examples),
        examples=len(examples),
        seed=settings.seed,
        steps=settings.steps,
        seconds=round(seconds, 3),
        seconds_per_step=round(seconds / settings.steps, 3),
        first_loss=losses[0],
        final_loss=losses[-1],
        losses=[round(x, 5) for x in losses],
        adapter_bytes=adapter_bytes,
        skipped_too_long=skipped,
        settings={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
        versions=_versions(),
    )
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(asdict(manifest), ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    return TrainResult(out, manifest)
