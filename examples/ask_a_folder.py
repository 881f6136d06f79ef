"""Ingest a folder and ask it questions, in Korean and English, with sources.

    .venv/bin/python examples/ask_a_folder.py [DOCS_DIR] [DATA_DIR]     # defaults: data/ and ./.saem-example

The first run embeds the folder; a rerun writes nothing (ingestion is incremental).
"""

from __future__ import annotations

import sys
from pathlib import Path

from saem import Saem


def main(docs: Path, data_dir: Path) -> None:
    app = Saem(data_dir=data_dir)  # packaged offline models; nothing loads until needed
    report = app.ingest(docs, exclude=["qa.jsonl"])
    print(f"ingested: {report.added} added, {report.unchanged} unchanged, {report.chunks_written} chunks written")
    for question in ("LoRA는 무엇을 학습하나요?", "What does top-p sampling keep?"):
        answer = app.ask(question, session_id="example", user_id="me")
        print(f"\nQ: {question}\nA: {answer.text}")
        for source in answer.sources:
            print(f"   [{source.n}] {Path(source.source).name} {source.start}-{source.end}")
        print(f"   prompt: {answer.budget.prompt_tokens} of {answer.budget.n_ctx} tokens")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else root / "data",
        Path(sys.argv[2] if len(sys.argv) > 2 else ".saem-example"),
    )
