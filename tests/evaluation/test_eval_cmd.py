"""The eval command's pieces: the index content hash, the threads of a batch run, serving a merged adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from saem.app.saem import Saem
from saem.cli.eval_cmd import index_sha256
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit

DOCS = {"a.md": "# A\n\nLoRA trains two small matrices.\n", "b.txt": "토크나이저는 텍스트를 토큰으로 나눕니다.\n"}


def _ingested(root: Path, docs: dict[str, str]) -> Saem:
    (root / "docs").mkdir(parents=True)
    for name, text in docs.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    app = Saem(data_dir=root / "data", embedder=HashEmbeddings(32))
    app.ingest(root / "docs")
    return app


def test_same_documents_anywhere_hash_the_same_and_any_change_shows(tmp_path: Path) -> None:
    one = _ingested(tmp_path / "one", DOCS)
    two = _ingested(tmp_path / "elsewhere" / "two", DOCS)
    assert len(index_sha256(one.settings)) == 64
    assert index_sha256(one.settings) == index_sha256(two.settings)
    edited = _ingested(tmp_path / "three", {**DOCS, "b.txt": "토크나이저는 텍스트를 바이트로 나눕니다.\n"})
    assert index_sha256(edited.settings) != index_sha256(one.settings)
    other_chunks = one.settings.with_overrides(chunk_tokens=128)
    assert index_sha256(other_chunks) != index_sha256(one.settings)


def test_batch_runs_use_every_core_unless_threads_were_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from saem.cli._common import AppState
    from saem.cli.eval_cmd import _batch_settings

    monkeypatch.delenv("SAEM_N_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert _batch_settings(AppState(data_dir=tmp_path), tmp_path, None).n_threads == cores
    assert _batch_settings(AppState(data_dir=tmp_path), tmp_path, 3).n_threads == 3
    monkeypatch.setenv("SAEM_N_THREADS", "1")  # the user's own setting wins over the batch default
    assert _batch_settings(AppState(data_dir=tmp_path), tmp_path, None).n_threads == 1


def test_the_lora_arms_load_a_merged_model_when_the_adapter_was_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import saem.models.llamacpp as llamacpp
    from saem.cli._lora_adapter import read_adapter
    from saem.cli.eval_cmd import LlamaCppGenerator
    from saem.errors import ConfigError

    loaded: list[tuple[str, str | None]] = []

    class Loaded:
        def __init__(self, *, model_path: str, lora_path: str | None, **_: object) -> None:
            loaded.append((model_path, lora_path))
            self.loaded_engine = None

    monkeypatch.setattr(llamacpp, "LlamaCppChatModel", Loaded)
    LlamaCppGenerator("base.gguf", None, lora_model_path="merged.gguf")._model("lora")
    LlamaCppGenerator("base.gguf", "adapter.gguf")._model("lora")
    LlamaCppGenerator("base.gguf", "adapter.gguf")._model("base")
    assert loaded == [("merged.gguf", None), ("base.gguf", "adapter.gguf"), ("base.gguf", None)]

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "training.jsonl").write_text('{"kind": "chunk", "text": "t"}\n', encoding="utf-8")
    (adapter / "merged.gguf").write_bytes(b"GGUF")
    manifest = {"base_sha256": "abc", "gguf": {"path": "merged.gguf", "method": "merged"}}
    (adapter / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    read, texts = read_adapter(adapter, "abc")
    assert read["gguf"]["method"] == "merged" and texts == ["t\n"]
    manifest["gguf"]["path"] = "../../outside/merged.gguf"  # a manifest cannot point outside its folder
    (adapter / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert read_adapter(adapter, "abc")[0]["gguf"]["path"].endswith("merged.gguf")  # read as adapter/merged.gguf
    (adapter / "merged.gguf").unlink()
    with pytest.raises(ConfigError, match="merged.gguf is missing"):
        read_adapter(adapter, "abc")
