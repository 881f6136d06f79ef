"""``saem eval --quick`` end to end on a copy of data/: ingest, train a tiny adapter, four arms on
the packaged GGUF, the report; then the same adapter through ``--adapter``, and the refusal of an
adapter whose training material holds an eval question.

The commands are mounted on a fresh Typer app with the main options, so the test does not depend
on how ``saem.cli.main`` wires them. About 3 minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from saem.cli import eval_cmd
from saem.cli.main import main_options

pytestmark = pytest.mark.slow


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(main_options)
    eval_cmd.register(app)
    return app


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(_app(), list(args), env={"COLUMNS": "120"}, catch_exceptions=False)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    shutil.copytree(repo_root / "data", root / "data")
    index, out = root / "index", root / "saem-eval"
    with contextlib.chdir(root):  # as a user runs it in the repo: data/, data/qa.jsonl -> saem-eval/
        result = _invoke("--data-dir", str(index), "eval", "--quick", "--limit", "4", "--steps", "4", "--threads", "2")
    assert result.exit_code == 0, result.output
    (out / "stdout.txt").write_text(result.output, encoding="utf-8")
    return {"root": root, "index": index, "out": out}


def test_quick_eval_writes_the_report_with_all_four_arms(quick_run: dict[str, Path]) -> None:
    out = quick_run["out"]
    for name in ("report.md", "report.html", "results.json", "metrics.png", "languages.png", "latency.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["arms"] == ["base", "lora", "rag", "lora+rag"]
    assert len(data["rows"]) == 16 and {r["lang"] for r in data["rows"]} == {"ko", "en"}
    rag = [r for r in data["rows"] if r["arm"] == "rag"]
    assert all(r["passages"] and r["prompt"].count("[1] ") == 1 for r in rag)
    assert [r["passages"] for r in rag] == [r["passages"] for r in data["rows"] if r["arm"] == "lora+rag"]
    man = data["manifest"]
    assert len(man["model_sha256"]) == 64 and len(man["adapter_sha256"]) == 64
    assert man["index"]["sources"] == 10 and man["sampling"]["temperature"] == 0.0 and man["k"] == 3
    assert man["sampling"]["n_threads"] == 2  # --threads reaches decoding (and training)
    assert len(man["index"]["sha256"]) == 64 and man["qa_file"].endswith("qa.jsonl")
    rag_all = next(m for m in data["metrics"] if m["arm"] == "rag" and m["group"] == "all")
    assert 0 < rag_all["latency_p50"] <= rag_all["latency_p95"]
    assert man["leakage"]["ok"] and man["leakage"]["questions"] == 4 and man["adapter_training"]["steps"] == 4
    assert (out / "adapter" / "adapter.gguf").is_file() and (out / "adapter" / "training.jsonl").is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and "lora+rag" in page
    assert "four-arm comparison" in (out / "stdout.txt").read_text()


def test_eval_reuses_an_adapter_and_refuses_a_leaky_one(quick_run: dict[str, Path]) -> None:
    root, adapter = quick_run["root"], quick_run["out"] / "adapter"
    common = [
        "--data-dir",
        str(quick_run["index"]),
        "eval",
        "--docs",
        str(root / "data"),
        "--qa",
        str(root / "data" / "qa.jsonl"),
        "--limit",
        "1",
        "--max-tokens",
        "8",
        "--arms",
        "lora",
    ]
    result = _invoke(*common, "--adapter", str(adapter), "--out", str(root / "again"))
    assert result.exit_code == 0, result.output
    again = json.loads((root / "again" / "results.json").read_text(encoding="utf-8"))
    assert again["arms"] == ["lora"] and again["manifest"]["adapter"] == str(adapter)
    question = json.loads((root / "data" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[0])["question"]
    leaky = root / "leaky"
    shutil.copytree(adapter, leaky)
    with (leaky / "training.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": "qa", "text": question, "answer": "x"}, ensure_ascii=False) + "\n")
    refused = _invoke(*common, "--adapter", str(leaky), "--out", str(root / "leaky-report"))
    assert refused.exit_code == 1 and "LeakageError" in refused.output and question[:20] in refused.output
    assert not (root / "leaky-report" / "results.json").exists()


def test_eval_refuses_a_data_dir_that_holds_a_qa_set(quick_run: dict[str, Path]) -> None:
    root = quick_run["root"]
    docs = root / "docs-with-copy"
    shutil.copytree(root / "data", docs)
    shutil.copy(docs / "qa.jsonl", docs / "qa_copy.jsonl")
    base = ["--data-dir", str(root / "polluted"), "eval", "--docs", str(docs), "--qa", str(docs / "qa.jsonl"),
            "--arms", "base", "--limit", "1", "--max-tokens", "4"]  # fmt: skip
    loose = _invoke(*base, "--exclude", "*.none", "--out", str(root / "loose"))  # the copy gets ingested
    assert loose.exit_code == 0, loose.output
    refused = _invoke(*base, "--out", str(root / "strict"))  # default: *.jsonl is no document
    assert refused.exit_code == 1 and "ConfigError" in refused.output and "qa_copy.jsonl" in refused.output


def test_lora_train_learns_the_documents_and_the_users_qa_pairs(quick_run: dict[str, Path]) -> None:
    root = quick_run["root"]
    train = root / "train.jsonl"
    pairs = [{"id": "t1", "question": "What is the code name of the saem test run?", "answers": ["Blue Heron"],
              "evidence": [], "source": None, "lang": "en", "kind": "factual"}]  # fmt: skip
    train.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    out = root / "trained"
    result = _invoke("--data-dir", str(quick_run["index"]), "lora", "train", "--docs", str(root / "data"),
                     "--qa", str(train), "--out", str(out), "--steps", "2", "--threads", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 steps" in result.output and "adapter.gguf" in result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["steps"] == 2 and manifest["material"]["by_kind"]["qa"] == 1
    assert manifest["material"]["qa_train"] == str(train) and len(manifest["base_sha256"]) == 64
    lines = [json.loads(line) for line in (out / "training.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {"kind": "qa", "text": pairs[0]["question"], "answer": "Blue Heron"} in lines
    assert {line["kind"] for line in lines} > {"qa", "chunk"}
    assert (out / "adapter.gguf").stat().st_size == manifest["gguf"]["bytes"]
