"""``saem lora train`` and ``saem eval``: train a LoRA on a folder, compare base / lora / rag / lora+rag.

    saem lora train --docs data/ --out out/adapter --steps 60
    saem eval --docs data/ --qa data/qa.jsonl --out out/eval            # trains an adapter if none given
    saem eval --docs data/ --qa data/qa.jsonl --out out/eval --quick    # a few minutes

Both ingest ``--docs`` into a data dir of their own (``ADAPTER_DIR/index``, ``REPORT_DIR/index``;
the global ``--data-dir`` overrides), never the QA files, and train on those chunks, so the lora
and rag arms learn from the same text. An adapter folder holds peft's files, ``adapter.gguf``,
``manifest.json`` and ``training.jsonl`` (the material, which ``eval`` checks for leaked eval
questions before it runs anything). Also here: the real-model seams of the runner,
:class:`LlamaCppGenerator` and :func:`saem_retriever`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from saem.cli._common import console, fail, state
from saem.errors import ConfigError, ModelError, SaemError
from saem.evaluation.runner import ARMS, TEMPLATE, Generation, Passage, Retriever

__all__ = ["LlamaCppGenerator", "register", "saem_retriever", "train_adapter"]

QUICK = {"limit": 8, "steps": 6, "max_tokens": 48, "k": 3}
EXCLUDE = ("*.jsonl",)  # QA sets (shared/eval format) sit beside the documents: never learn or retrieve them
EXCLUDE_HELP = "Skip files matching GLOB when ingesting DOCS (repeatable; default *.jsonl, i.e. QA sets)."


class LlamaCppGenerator:
    """One GGUF served twice by llama.cpp: plain (``"base"``) and with a GGUF LoRA (``"lora"``).

    Greedy (temperature 0), fixed ``seed``, the same settings for both; each model loads on its
    first call, outside the timed part. ``sampling`` is what the manifest records. Not thread-safe."""

    def __init__(
        self,
        model_path: str,
        lora_path: str | None = None,
        *,
        lora_model_path: str | None = None,
        seed: int = 0,
        max_tokens: int = 64,
        n_ctx: int = 4096,
        n_threads: int = 1,
    ) -> None:
        # lora_model_path: a whole model with the adapter merged in, when no GGUF LoRA could be written
        self.model_path, self.lora_path, self.lora_model_path = model_path, lora_path, lora_model_path
        self.sampling: dict[str, Any] = {
            "temperature": 0.0,
            "seed": seed,
            "max_tokens": max_tokens,
            "n_ctx": n_ctx,
            "n_threads": n_threads,
        }
        self._models: dict[str, Any] = {}

    def _model(self, which: str) -> Any:
        if which not in self._models:
            from saem.models.llamacpp import LlamaCppChatModel

            if which == "lora" and not (self.lora_path or self.lora_model_path):
                raise ConfigError("the lora arms need an adapter", hint="train one with 'saem lora train'")
            path, lora = self.model_path, None
            if which == "lora":
                path = self.lora_model_path or self.model_path
                lora = None if self.lora_model_path else self.lora_path
            self._models[which] = LlamaCppChatModel(model_path=path, lora_path=lora, **self.sampling)
            self._models[which].loaded_engine  # noqa: B018 — load now, not inside the timed call
        return self._models[which]

    def fits(self, prompt: str) -> bool:
        """Whether ``prompt``, as one user turn in the chat template, leaves room for the answer."""
        used = self._model("base").count_tokens([("user", prompt)])
        return bool(used + self.sampling["max_tokens"] <= self.sampling["n_ctx"])

    def __call__(self, model: Literal["base", "lora"], prompt: str) -> Generation:
        chat, traces = self._model(model), []  # type: ignore[var-annotated]
        started = time.perf_counter()
        message = chat.invoke([("user", prompt)], on_trace=traces.append)
        seconds = time.perf_counter() - started
        tokens = (traces[-1].prompt_tokens, traces[-1].completion_tokens) if traces else (0, 0)
        return Generation(str(message.content).strip(), seconds, *tokens)


def saem_retriever(app: Any) -> Retriever:
    """``Saem.retrieve`` as the runner's retriever (Documents → numbered Passages)."""

    def retrieve(question: str, k: int) -> list[Passage]:
        docs = app.retrieve(question, k=k)
        return [
            Passage(
                n,
                str(d.metadata.get("chunk_id", "")),
                str(d.metadata.get("source", "")),
                d.page_content,
                d.metadata.get("score"),
            )
            for n, d in enumerate(docs, 1)
        ]

    return retrieve


# --- pieces -------------------------------------------------------------------------------------------


def _ingest(settings: Any, docs: Path, skip: Sequence[Path], exclude: Sequence[str]) -> Any:
    """Ingest ``docs`` (minus ``exclude`` globs and the ``skip`` files) and check the data dir holds
    nothing else: a source outside ``docs`` or matching them (a QA set ingested earlier) would leak
    into the rag arms or the training material, so it is a ``ConfigError``."""
    from fnmatch import fnmatchcase

    from saem.app.saem import Saem
    from saem.cli.ingest_cmd import ProgressView, show_report

    if not docs.is_dir():
        raise ConfigError(f"{docs} is not a folder", hint="--docs takes the folder of documents")
    globs = [*exclude, *(p.name for p in skip)]
    app = Saem(settings)
    with ProgressView(enabled=True) as view:
        report = app.ingest(docs, exclude=globs, progress=view.update)
    show_report(report, quiet_unchanged=True)
    root = docs.resolve()
    stray = [
        path
        for path, _ in _chunk_rows(settings, texts=False)
        if not Path(path).resolve().is_relative_to(root) or any(fnmatchcase(Path(path).name, g) for g in globs)
    ]
    if stray:
        raise ConfigError(
            f"the data dir {settings.data_dir} holds {len(set(stray))} source(s) that are not part of {docs}"
            f" or are excluded, e.g. {stray[0]}",
            hint="use a fresh data dir (the default is one inside --out)",
        )
    if app.stats().chunks == 0:
        raise ConfigError(f"no chunks were ingested from {docs}", hint="check the folder holds documents")
    return app


def _chunk_rows(settings: Any, *, texts: bool = True) -> list[tuple[str, str]]:
    """``(source path, chunk text)`` of every chunk in the data dir, ordered by source path then
    position (deterministic); with ``texts=False`` one row per source and empty texts."""
    from sqlalchemy import select

    from saem.store.catalogue import Catalogue, Chunk, Source

    cat = Catalogue.open(settings.db_path, readonly=True)
    try:
        with cat.read() as s:
            if not texts:
                return [(path, "") for path in s.scalars(select(Source.path).order_by(Source.path))]
            query = select(Source.path, Chunk.text).join(Source, Chunk.source_id == Source.id)
            return [(row[0], row[1]) for row in s.execute(query.order_by(Source.path, Chunk.ord))]
    finally:
        cat.close()


def index_sha256(settings: Any) -> str:
    """A content hash of what the rag arms retrieve from: every chunk's text in source-name and
    position order, with the embedding model and chunker. Folder paths are left out, so the same
    documents ingested elsewhere hash the same; any change to a chunk or a model changes it."""
    import hashlib

    digest = hashlib.sha256(f"{settings.embed_model}\n{settings.chunk_tokens}:{settings.chunk_overlap}\n".encode())
    for path, text in sorted(_chunk_rows(settings), key=lambda row: Path(row[0]).name):  # stable: by name, then ord
        digest.update(Path(path).name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


def train_adapter(
    settings: Any, out: Path, *, qa_train: Path | None, steps: int, rank: int, seed: int
) -> dict[str, Any]:
    """Train on the data dir's chunks (+ the QA pairs of ``qa_train``), convert to ``adapter.gguf``,
    write ``training.jsonl`` and extend ``manifest.json``; returns the manifest. Shows progress."""
    from saem.evaluation.augment import as_examples, build_training_material
    from saem.evaluation.gguf_lora import export_for_llama_cpp
    from saem.evaluation.lora import LoraSettings, StepReport, file_sha256, load_base, train_lora
    from saem.evaluation.runner import load_qa

    material = build_training_material([text for _, text in _chunk_rows(settings)])
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


def _read_adapter(adapter: Path, model_sha: str) -> tuple[dict[str, Any], list[str]]:
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


def _adapter_facts(adapter: Path | None, manifest: dict[str, Any] | None) -> dict[str, Any]:
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


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from saem.evaluation.lora import _versions as lora_versions

    out = lora_versions()
    for dist in ("numpy", "scipy", "matplotlib"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _show_summary(result: Any) -> None:
    def num(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    table = Table(title="four-arm comparison, all questions (CIs in the report)", title_justify="left")
    for name in ("arm", "n", "EM", "F1", "contains", "correct", "abstain", "Recall@k", "p50/p95 s"):
        table.add_column(name, justify="left" if name == "arm" else "right")
    for arm in result.arms:
        m = result.arm_metrics(arm)
        table.add_row(arm, str(m.n), num(m.exact_match), num(m.f1), num(m.contains), num(m.correct),
                      num(m.abstention), num(m.recall_at_k), f"{m.latency_p50:.1f}/{m.latency_p95:.1f}")  # fmt: skip
    console.print(table)
    for c in result.comparisons:
        if c.metric == "correct":
            console.print(("[green]" if c.significant else "[dim]") + c.verdict + "[/]", highlight=False)


THREADS_HELP = (
    "CPU threads for training and decoding (default: the n_threads setting when you set it, else every "
    "core this process may use: a batch job on an otherwise idle machine; beside other work, 1 is faster)."
)


def _batch_settings(st: Any, out: Path, threads: int | None) -> Any:
    """Settings for a training or eval run: ``--threads`` wins, then an ``n_threads`` the user set
    (flag, env or file); the chat default of 1 (best under load) becomes every usable core, since
    on an idle 2-core machine llama.cpp evaluated prompts 1.75x faster with 2 threads."""
    settings = st.settings(data_dir=st.data_dir or out / "index", **({"n_threads": threads} if threads else {}))
    if settings.origin("n_threads") == "default":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        settings = settings.with_overrides(n_threads=max(1, cores))
    return settings


# --- commands -----------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    lora_app = typer.Typer(help="Train a LoRA adapter on a folder.", no_args_is_help=True)
    app.add_typer(lora_app, name="lora")

    @lora_app.command("train")
    def lora_train(
        ctx: typer.Context,
        docs: Annotated[Path, typer.Option("--docs", help="Folder of documents to learn.")],
        out: Annotated[Path, typer.Option("--out", help="Adapter folder to write.")],
        qa: Annotated[Path | None, typer.Option("--qa", help="Training QA pairs (JSONL), never the eval set.")] = None,
        steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 60,
        rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank r (alpha = 2r).")] = 8,
        seed: Annotated[int, typer.Option("--seed", help="Training seed.")] = 0,
        threads: Annotated[int | None, typer.Option("--threads", min=1, help=THREADS_HELP)] = None,
        exclude: Annotated[list[str] | None, typer.Option("--exclude", help=EXCLUDE_HELP)] = None,
    ) -> None:
        """Train a LoRA on DOCS' chunks (+ --qa pairs); writes the adapter, adapter.gguf and manifest.json.

        Example: saem lora train --docs data/ --out out/adapter --steps 60
        """
        st = state(ctx)
        try:
            settings = _batch_settings(st, out, threads)
            _ingest(settings, docs, [qa] if qa else [], exclude or EXCLUDE)
            train_adapter(settings, out, qa_train=qa, steps=steps, rank=rank, seed=seed)
        except SaemError as err:
            fail(err, debug=st.debug)

    @app.command("eval")
    def eval_command(
        ctx: typer.Context,
        docs: Annotated[
            Path, typer.Option("--docs", help="Folder of documents (the RAG corpus and LoRA data).")
        ] = Path("data"),
        qa: Annotated[
            Path | None,
            typer.Option("--qa", help="Eval QA set (JSONL, shared/eval/README.md format); default DOCS/qa.jsonl."),
        ] = None,
        out: Annotated[Path, typer.Option("--out", help="Report folder to write.")] = Path("saem-eval"),
        adapter: Annotated[Path | None, typer.Option("--adapter", help="Adapter folder (else one is trained).")] = None,
        arms: Annotated[str, typer.Option("--arms", help="Comma-separated arms.")] = ",".join(ARMS),
        limit: Annotated[int | None, typer.Option("--limit", min=1, help="Questions (spread over kinds).")] = None,
        quick: Annotated[
            bool, typer.Option("--quick", help="Small run: 8 questions, 6 training steps, k=3, 48-token answers.")
        ] = False,
        steps: Annotated[int | None, typer.Option("--steps", min=1, help="Steps when training (default 60).")] = None,
        rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank when training.")] = 8,
        k: Annotated[int | None, typer.Option("--k", min=1, help="Chunks per rag prompt (default retrieve_k).")] = None,
        max_tokens: Annotated[
            int | None, typer.Option("--max-tokens", min=1, help="Answer tokens (default 64).")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed for decoding, training and the bootstrap.")] = 0,
        threads: Annotated[int | None, typer.Option("--threads", min=1, help=THREADS_HELP)] = None,
        exclude: Annotated[list[str] | None, typer.Option("--exclude", help=EXCLUDE_HELP)] = None,
    ) -> None:
        """Compare base / lora / rag / lora+rag on one GGUF and write report.md, report.html, results.json.

        Example: saem eval --quick   (data/ and data/qa.jsonl into saem-eval/, a few minutes)
        Example: saem eval --docs ~/notes --qa ~/notes-qa.jsonl --out out/eval --threads 2
        """
        st = state(ctx)
        try:
            if qa is None:
                qa = docs / "qa.jsonl"
                if not qa.is_file():
                    raise ConfigError(f"{docs} has no qa.jsonl", hint="give the eval questions with --qa FILE.jsonl")
            _run_eval(
                st,
                docs=docs,
                qa=qa,
                out=out,
                adapter=adapter,
                arms=arms,
                seed=seed,
                rank=rank,
                limit=limit or (QUICK["limit"] if quick else None),
                steps=steps or (QUICK["steps"] if quick else 60),
                k=k or (QUICK["k"] if quick else None),
                max_tokens=max_tokens or (QUICK["max_tokens"] if quick else 64),
                exclude=exclude or EXCLUDE,
                threads=threads,
            )
        except SaemError as err:
            fail(err, debug=st.debug)


def _run_eval(
    st: Any,
    *,
    docs: Path,
    qa: Path,
    out: Path,
    adapter: Path | None,
    arms: str,
    seed: int,
    rank: int,
    limit: int | None,
    steps: int,
    k: int | None,
    max_tokens: int,
    exclude: Sequence[str],
    threads: int | None = None,
) -> None:
    """The ``eval`` command's work (see the module docstring); raises ``SaemError``s, prints progress."""
    from saem.evaluation.lora import file_sha256
    from saem.evaluation.report import write_report
    from saem.evaluation.runner import guard_leakage, load_qa, run_arms, select_items, summarize
    from saem.models.registry import resolve

    started = time.perf_counter()
    chosen = [a.strip() for a in arms.split(",") if a.strip()]
    if not chosen or any(a not in ARMS for a in chosen):
        raise ConfigError(f"--arms {arms!r}: choose from {','.join(ARMS)}")
    settings = _batch_settings(st, out, threads)
    items = select_items(load_qa(qa), limit)
    if not items:
        raise ConfigError(f"{qa} holds no questions")
    k = k or settings.retrieve_k
    model = resolve(settings.chat_model, "chat")
    assert model.path is not None
    model_sha = file_sha256(model.path)
    app = _ingest(settings, docs, [qa], exclude)
    adapter_manifest: dict[str, Any] | None = None
    leakage = None
    if any(a.startswith("lora") for a in chosen):
        if adapter is None:
            adapter = out / "adapter"
            train_adapter(settings, adapter, qa_train=None, steps=steps, rank=rank, seed=seed)
        adapter_manifest, texts = _read_adapter(adapter, model_sha)
        leakage = guard_leakage(texts, items)  # LeakageError: refuse before any answer is generated
        console.print(f"leakage check: none of {len(items)} eval questions in {len(texts)} training texts")
    served: str | None = None  # the adapter as llama.cpp loads it: a GGUF LoRA, or a merged model
    merged = False
    if adapter_manifest and adapter:
        export = adapter_manifest.get("gguf", {})
        served = str(adapter / Path(str(export.get("path", "adapter.gguf"))).name)
        merged = export.get("method") == "merged"
    generate = LlamaCppGenerator(
        settings.chat_model,
        None if merged else served,
        lora_model_path=served if merged else None,
        seed=seed,
        max_tokens=max_tokens,
        n_threads=settings.n_threads,
    )
    columns = (TextColumn("[bold]{task.fields[arm]:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("eval", total=len(items) * len(chosen), arm=chosen[0])
        rows = run_arms(
            items,
            generate=generate,
            retrieve=saem_retriever(app),
            arms=chosen,
            k=k,
            progress=lambda row: bar.update(task, advance=1, arm=row.arm),
            fits=generate.fits,
        )
    manifest: dict[str, Any] = {
        "model": settings.chat_model,
        "model_file": model.path.name,
        "model_sha256": model_sha,
        **_adapter_facts(adapter, adapter_manifest),
        "qa_file": str(qa),
        "qa_sha256": file_sha256(qa),
        "items": [i["id"] for i in items],
        "docs": str(docs),
        "exclude": list(exclude),
        "index": app.stats().to_dict()
        | {"data_dir": str(settings.data_dir), "embed_model": settings.embed_model, "sha256": index_sha256(settings)},
        "arms": chosen,
        "k": k,
        "sampling": generate.sampling,
        "seeds": {"decoding": seed, "lora": (adapter_manifest or {}).get("seed"), "bootstrap": seed},
        "versions": _versions(),
        "prompt_template": {"path": "saem/evaluation/prompt.jinja", "sha256": file_sha256(TEMPLATE)},
    }
    result = summarize(rows, manifest=manifest, leakage=leakage, seed=seed)
    result.manifest["wall_seconds"] = round(time.perf_counter() - started, 1)
    files = write_report(result, out)
    _show_summary(result)
    console.print(
        f"report: [bold]{files.html}[/] · {files.markdown.name} · {files.results.name} "
        f"({result.manifest['wall_seconds']:.0f}s)"
    )
