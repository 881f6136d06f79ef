"""Reranker configuration without any model: a hub id is refused unless downloads are allowed,
before anything loads or touches the network (sockets are disabled in this tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saem.app.saem import Saem
from saem.errors import ModelError
from saem.retrieval.rerank import CrossEncoderReranker, EmbedderReranker, load_reranker
from saem.settings import Settings
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit

HUB_ID = "BAAI/bge-reranker-v2-m3"


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(resolved: object) -> None:
        raise AssertionError(f"a cross-encoder was loaded: {resolved}")

    monkeypatch.setattr("saem.models.rerankers.load_cross_encoder", refuse)


def _refused(err: pytest.ExceptionInfo[ModelError]) -> None:
    assert f"rerank model {HUB_ID!r} is a hub id, and downloads are off" in str(err.value)
    assert err.value.model == HUB_ID and "allow_downloads" in (err.value.hint or "")


def test_a_reranker_hub_id_without_allow_downloads_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as direct:
        CrossEncoderReranker(HUB_ID)
    _refused(direct)
    with pytest.raises(ModelError) as loaded:
        load_reranker(HUB_ID, Settings.load({"data_dir": tmp_path, "rerank_model": HUB_ID}, environ={}))
    _refused(loaded)


def test_saem_refuses_a_reranker_hub_id_when_the_searcher_is_built(tmp_path: Path) -> None:
    app = Saem(data_dir=tmp_path, rerank_model=HUB_ID, embedder=HashEmbeddings(64))
    with pytest.raises(ModelError) as err:
        app.retrieve("what is top-p?")
    _refused(err)
    with pytest.raises(ModelError):  # nothing half-built was kept
        _ = app.searcher


def test_with_allow_downloads_a_hub_id_is_accepted_and_still_loads_lazily(tmp_path: Path) -> None:
    reranker = load_reranker(
        HUB_ID, Settings.load({"data_dir": tmp_path, "rerank_model": HUB_ID, "allow_downloads": True}, environ={})
    )
    assert isinstance(reranker, CrossEncoderReranker)
    assert reranker.resolved.source == "hub" and reranker.model_id == HUB_ID and reranker._model is None


def test_the_rerank_settings_reach_the_rerankers(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path, "rerank_max_chars": 123, "rerank_batch_size": 3}, environ={})
    embedder = load_reranker("embedder", settings, embedder=HashEmbeddings(64))
    assert isinstance(embedder, EmbedderReranker) and embedder.max_chars == 123
    folder = tmp_path / "my-cross-encoder"  # a local folder: nothing loads until the first rerank
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    cross = load_reranker(str(folder), settings)
    assert isinstance(cross, CrossEncoderReranker) and (cross.batch_size, cross.max_chars) == (3, 123)
