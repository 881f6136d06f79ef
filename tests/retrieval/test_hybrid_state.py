"""HybridSearcher's view of the data dir: a db made by the memory module, bounded lexical config."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from saem.app.saem import Saem
from saem.errors import ConfigError
from saem.memory import MemoryDB, SQLiteChatMessageHistory
from saem.retrieval.hybrid import HybridConfig, HybridSearcher
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit


def test_a_db_holding_only_chat_memory_means_nothing_is_ingested_yet(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = MemoryDB.open(data / "saem.db")  # the user chats before ingesting anything
    SQLiteChatMessageHistory("s1", db, "alice").add_messages([HumanMessage("안녕하세요"), AIMessage("네")])
    db.close()
    embedder = HashEmbeddings(64)
    searcher = HybridSearcher(data, embedder)

    result = searcher.search("LoRA란 무엇인가요?", k=3)
    assert result.abstained and result.hits == []
    assert result.reason == "nothing is ingested in this data dir yet"

    # after an ingest into the same data dir, the same searcher finds the chunks
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lora.md").write_text("# LoRA\n\nLoRA trains two small low-rank matrices.\n", encoding="utf-8")
    Saem(data_dir=data, embedder=embedder).ingest(docs)
    found = searcher.search("LoRA low-rank matrices", k=3)
    assert not found.abstained and found.hits[0].source.endswith("lora.md")
    assert SQLiteChatMessageHistory("s1", MemoryDB.open(data / "saem.db"), "alice").messages[0].content == "안녕하세요"


def test_lexical_max_postings_must_be_positive_or_none() -> None:
    with pytest.raises(ConfigError):
        HybridConfig(lexical_max_postings=0)
    assert HybridConfig(lexical_max_postings=None).lexical_max_postings is None


def test_a_bounded_search_finds_what_the_unbounded_one_does(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):  # "the" and "model" everywhere, one chunk about quantization
        extra = " Quantization stores the model weights in four bits." if i == 17 else ""
        (docs / f"d{i:02d}.md").write_text(f"# Doc {i}\n\nThe model number {i} is a model.{extra}\n", encoding="utf-8")
    app = Saem(data_dir=tmp_path / "data", embedder=HashEmbeddings(64))
    app.ingest(docs)
    query = "How does the model store quantization weights?"
    hits = {}
    for budget in (None, 2):
        searcher = HybridSearcher(app.settings.data_dir, app.embedder, config=HybridConfig(lexical_max_postings=budget))
        hits[budget] = searcher.search(query, k=3).hits
    assert hits[2][0].source.endswith("d17.md") and hits[2][0].lexical_rank == 1
    assert hits[2][0].lexical_score == pytest.approx(hits[None][0].lexical_score, abs=1e-4)


def test_the_config_is_read_from_the_settings_field_by_field(tmp_path: Path) -> None:
    from saem.settings import Settings

    values = {"rrf_k": 7, "retrieve_candidates": 9, "mmr": True, "neighbour_weight": 0.5, "score_threshold": 0.2,
              "fusion": "rrf", "cross_lingual_lexical_weight": 0.0, "rerank_max_chars": 300}  # fmt: skip
    config = HybridConfig.from_settings(Settings.load({"data_dir": tmp_path, **values}, environ={}))
    assert (config.rrf_k, config.candidates, config.mmr, config.neighbour_weight, config.score_threshold) == (
        7, 9, True, 0.5, 0.2)  # fmt: skip
    assert (config.fusion, config.cross_lingual_lexical_weight, config.rerank_max_chars) == ("rrf", 0.0, 300)
    # the dataclass's defaults are the settings' defaults, so a searcher built without settings agrees
    assert HybridConfig.from_settings(Settings.load({"data_dir": tmp_path}, environ={})) == HybridConfig()
    assert HybridConfig.from_settings(Settings.load({}, environ={}), candidates=3).candidates == 3
