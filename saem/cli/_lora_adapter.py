"""The adapter folder of ``saem lora train``: train a LoRA on the data dir's chunks, export it for
llama.cpp, write ``training.jsonl`` and ``manifest.json``; and read such a folder back for ``saem eval``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from saem.cli._common import console
from saem.cli._eval_corpus import chunk_rows
from saem.errors import ConfigError, ModelError
from saem.settings import Settings

__all__ = ["adapter_facts", "read_adapter", "train_adapter"]


def train_adapter(
    settings: Settings, out: Path, *, qa_train: Path | None, steps: int, rank: int, seed: int
) -> dict[str, Any]:
    """Train on the data dir's chunks (+ the QA pairs of ``qa_train``), convert to ``adapter.gguf``,
    write ``training.jsonl`` and extend ``manifest.json``; returns the manifest. Shows progress."""
    from saem.evaluation.augment import as_examples, build_training_material
    from saem.evaluation.gguf_lora import export_for_llama_cpp
    from saem.evaluation.lora import LoraSettings, StepReport, file_sha256, load_base, train_lora
    from saem.evaluation.runner import load_qa

    material = build_training_material([text for _, text in chunk_rows(settings)])
    extra = [(i["question"], i["answers"][0]) for i in load_qa(qa_train) if i["answers"]] if qa_train else []
    console.print(f"[dim]loading {settings.chat_model} into transformers …[/]")
    base = load_base(settings.chat_model)
    examples = as_examples(material, base.chat_example) + [base.chat_example(q, a) for q, a in extra]
    lora = LoraSettings(steps=steps, rank=rank, alpha=2 * rank, seed=seed, threads=settings.n_threads)
    columns = (
        TextColumn("[bold]LoRA"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("train", total=steps, loss="–")

        def progress(r: StepReport) -> None:
            bar.update(task, completed=r.step, loss=f"{r.loss:.3f}")

        result = train_lora(base, examples, out, lora, progress=progress)
    conversion = export_for_llama_cpp(out, base.path, out)  # a GGUF LoRA, else the merged model
    if conversion.method == "merged":
        console.print(f"[yellow]{conversion.reason}[/]", highlight=False)
    with (out / "training.jsonl").open("w", encoding="utf-8") as fh:
        for item in material:
            fh.write(json.dumps(asdict(item), ensure_ascii=False) + "\n")
        for question, answer in extra:
            fh.write(json.dumps({"kind": "qa", "text": question, "answer": answer}, ensure_ascii=False) + "\n")
    kinds: dict[str, int] = {}
    for item in material:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    manifest = asdict(result.manifest) | {
        "gguf": {
            "path": conversion.path.name,
            "method": conversion.method,
            "reason": conversion.reason,
            "sha256": file_sha256(conversion.path),
            "bytes": conversion.bytes,
        },
        "material": {
            "examples": len(examples),
            "by_kind": kinds | {"qa": len(extra)},
            "qa_train": str(qa_train) if qa_train else None,
            "data_dir": str(settings.data_dir),
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    m = result.manifest
    console.print(
        f"adapter [bold]{out}[/]: {steps} step{'s' * (steps != 1)} in {m.seconds:.0f}s, loss {m.first_loss:.3f} → "
        f"{m.final_loss:.3f}; {len(examples)} examples; {conversion.path.name} {conversion.bytes / 1e6:.1f} MB"
    )
    del base
    return manifest


def read_adapter(adapter: Path, model_sha: str) -> tuple[dict[str, Any], list[str]]:
    manifest_path, material = adapter / "manifest.json", adapter / "training.jsonl"
    hint = "use an adapter folder written by 'saem lora train'"
    if not manifest_path.is_file():
        raise ConfigError(f"{manifest_path} is missing", hint=hint)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    gguf = adapter / Path(str(manifest.get("gguf", {}).get("path", "adapter.gguf"))).name  # never outside ADAPTER
    for path in (gguf, material):
        if not path.is_file():
            raise ConfigError(f"{path} is missing", hint=hint)
    if manifest.get("base_sha256") != model_sha:
        raise ModelError(
            "the adapter was trained on another base model than the configured chat model",
            path=adapter,
            hint="train it again on this model",
        )
    rows = [json.loads(line) for line in material.read_text(encoding="utf-8").splitlines() if line.strip()]
    return manifest, [f"{r.get('text', '')}\n{r.get('answer', '')}" for r in rows]


def adapter_facts(adapter: Path | None, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's adapter entries: path, GGUF hash and how it was trained (None without lora arms)."""
    if manifest is None:
        return {"adapter": None, "adapter_sha256": None, "adapter_training": None}
    keys = ("steps", "seed", "examples", "first_loss", "final_loss", "data_sha256", "settings", "material")
    return {
        "adapter": str(adapter),
        "adapter_sha256": manifest.get("gguf", {}).get("sha256"),
        "adapter_method": manifest.get("gguf", {}).get("method", "adapter"),
        "adapter_export_reason": manifest.get("gguf", {}).get("reason"),
        "adapter_training": {key: manifest.get(key) for key in keys},
    }
