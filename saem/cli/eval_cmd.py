"""``saem lora train`` and ``saem eval``: train a LoRA on a folder, compare base / lora / rag / lora+rag.

    saem lora train --docs data/ --out out/adapter --steps 60
    saem eval --docs data/ --qa data/qa.jsonl --out out/eval            # trains an adapter if none given
    saem eval --docs data/ --qa data/qa.jsonl --out out/eval --quick    # a few minutes

Both ingest ``--docs`` into a data dir of their own (``ADAPTER_DIR/index``, ``REPORT_DIR/index``;
the global ``--data-dir`` overrides), never the QA files, and train on those chunks, so the lora
and rag arms learn from the same text. An adapter folder holds peft's files, ``adapter.gguf``,
``manifest.json`` and ``training.jsonl`` (the material, which ``eval`` checks for leaked eval
questions before it runs anything).

The pieces live beside this module: ``_eval_corpus`` (ingesting and hashing the documents),
``_lora_adapter`` (training, exporting and reading an adapter folder) and ``_eval_seams`` (the
runner's real-model seams, :class:`LlamaCppGenerator` and :func:`saem_retriever`, re-exported here).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from saem.cli._common import AppState, console, fail, state
from saem.cli._eval_corpus import index_sha256, ingest_docs
from saem.cli._eval_seams import LlamaCppGenerator, saem_retriever
from saem.cli._lora_adapter import adapter_facts, read_adapter, train_adapter
from saem.errors import ConfigError, SaemError
from saem.evaluation.runner import ARMS, TEMPLATE
from saem.settings import Settings

__all__ = ["LlamaCppGenerator", "index_sha256", "register", "saem_retriever", "train_adapter"]

QUICK = {"limit": 8, "steps": 6, "max_tokens": 48, "k": 3}
EXCLUDE = ("*.jsonl",)  # QA sets (shared/eval format) sit beside the documents: never learn or retrieve them
EXCLUDE_HELP = "Skip files matching GLOB when ingesting DOCS (repeatable; default *.jsonl, i.e. QA sets)."


# --- pieces -------------------------------------------------------------------------------------------


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


def _batch_settings(st: AppState, out: Path, threads: int | None) -> Settings:
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
            ingest_docs(settings, docs, [qa] if qa else [], exclude or EXCLUDE)
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
    st: AppState,
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
    app = ingest_docs(settings, docs, [qa], exclude)
    adapter_manifest: dict[str, Any] | None = None
    leakage = None
    if any(a.startswith("lora") for a in chosen):
        if adapter is None:
            adapter = out / "adapter"
            train_adapter(settings, adapter, qa_train=None, steps=steps, rank=rank, seed=seed)
        adapter_manifest, texts = read_adapter(adapter, model_sha)
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
        **adapter_facts(adapter, adapter_manifest),
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
